#!/usr/bin/env bash
# Regenerate the README's screenshots: serve kassa on a scratch SQLite database and let
# headless Chromium (Debian's package) render the pages; then render the Grafana dashboard
# from a real Prometheus scraping kassa under load (scripts/render_dashboard.py, ~2 minutes;
# needs Debian's `prometheus`). Needs no internet.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
browser=${CHROMIUM:-/usr/bin/chromium}
[ -x "$browser" ] || { echo "screenshots: $browser not found (apt-get install chromium)"; exit 1; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$work" && exec "$root/.venv/bin/kassa" serve --port "$port" >"$work/serve.log" 2>&1) &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.2
done
mkdir -p docs/screenshots
shoot() {  # url, file, width, height
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --virtual-time-budget=5000 \
    --window-size="$3,$4" --screenshot="$2" "$1" 2>/dev/null
  echo "screenshots: wrote $2"
}
shoot "http://127.0.0.1:$port/docs" docs/screenshots/docs.png 1280 1600
# The checkout page, the payments list and a payment's page, through the browser kit
# (playwright-core driving the same chromium; `make browser-tools`).
(cd tests/browser && KASSA_URL="http://127.0.0.1:$port" OUT_DIR="$root/docs/screenshots" \
  CHROMIUM="$browser" node screenshots.mjs)
kill "$server" 2>/dev/null || true  # the dashboard renderer serves its own kassa
"$root/.venv/bin/python" scripts/render_dashboard.py --screenshot docs/screenshots/dashboard.png
