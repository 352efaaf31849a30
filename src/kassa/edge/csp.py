"""Content-Security-Policy: nothing at all for JSON answers; for the Swagger UI page, its own
files plus exactly the inline script it is rendered with (allowed by its hash, never by
'unsafe-inline')."""

from __future__ import annotations

import base64
import hashlib
import re

DEFAULT_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def html_page_policy(html: str) -> str:
    """The policy for a page of ours: same-origin files, the page's own inline scripts by their
    SHA-256, data: images. Swagger UI sets its styles through the DOM, which needs no
    'unsafe-inline' (checked in a real browser by tests/edge/test_docs_csp_browser.py)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self'; "
        "img-src 'self' data:; "
        "font-src 'self' data:; "
        "connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


def form_page_policy(styles: list[str], form_targets: list[str]) -> str:
    """The policy for a server-rendered page with no script at all: its inline styles by
    their SHA-256, nothing loaded from anywhere, and forms that post only to kassa — and
    redirect (browsers check a form's redirects too) only to `form_targets` (origins)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"
        for style in styles
    )
    targets = " ".join(["'self'", *form_targets])
    return (
        "default-src 'none'; "
        f"style-src {hashes}; "
        "frame-ancestors 'none'; base-uri 'none'; "
        f"form-action {targets}"
    )
