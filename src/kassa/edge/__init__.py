"""The edge of the service: what is checked about a request before any route sees it, and
what every response carries — proxies and client addresses, header and JSON-nesting caps,
CORS, Content-Security-Policy, and the TLS set-up of `kassa serve`."""
