"""Server-rendered pages (checkout, dashboard): Jinja2 templates from the package, their
Content-Security-Policy, and CSRF tokens for their forms.

Pages carry no script and no inline style: the CSP allows kassa's own stylesheet and
nothing else (`form-action` lists kassa and, on a checkout page, the one shop the form's
answer redirects to: browsers check a form's redirects against it too).

A form is protected by a synchronizer token: a random value in an HttpOnly, SameSite=Lax
cookie, and in the form the HMAC of that value and what the form is bound to (a checkout
session, a dashboard session). A POST from another origin has neither the cookie (Lax) nor
the token, and is refused also when the browser says it came from another site
(`Sec-Fetch-Site`) or another origin (`Origin`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from kassa.money import format_amount

STATIC_PATH = "/static"
_DEFAULT_LOCALE = "en_US"

templates = Environment(
    loader=PackageLoader("kassa", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def static_files() -> StaticFiles:
    return StaticFiles(packages=[("kassa", "static")])


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an absolute URL (for a CSP source list)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{host}{port}"


def page_policy(form_targets: Iterable[str] = ()) -> str:
    """The CSP of a page: kassa's stylesheet and images, no script at all, forms posted to
    kassa (and redirected to `form_targets`' origins)."""
    targets = " ".join(sorted({origin_of(url) for url in form_targets}))
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action 'self'{' ' + targets if targets else ''}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def request_locale(request: Request) -> str:
    """The reader's first Accept-Language that Babel knows (for amounts), else en_US."""
    from babel import Locale, UnknownLocaleError

    header = request.headers.get("accept-language", "")
    for part in header.split(",")[:8]:
        tag = part.split(";", 1)[0].strip().replace("-", "_")
        if not tag or tag == "*" or len(tag) > 35:
            continue
        try:
            return str(Locale.parse(tag))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return _DEFAULT_LOCALE


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    form_targets: Iterable[str] = (),
) -> HTMLResponse:
    locale = request_locale(request)

    def money(amount: int, currency: str) -> str:
        return format_amount(amount, currency, locale)

    html = templates.get_template(template).render(
        {**context, "money": money, "static": STATIC_PATH}
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Content-Security-Policy"] = page_policy(form_targets)
    response.headers["Cache-Control"] = "no-store"
    return response


MAX_FORM_FIELDS = 32
MAX_FIELD_LENGTH = 4096


class FormRefused(Exception):
    """The body is not a form a page of ours sends (type, size, repeated or long fields)."""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an `application/x-www-form-urlencoded` body (what every form of ours
    posts: no files), each at most once and at most `MAX_FIELD_LENGTH` characters. Read
    here, not by a multipart parser: nothing else is accepted."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormRefused
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise FormRefused from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields or len(value) > MAX_FIELD_LENGTH:
            raise FormRefused
        fields[name] = value
    return fields


def see_other(url: str) -> RedirectResponse:
    """303: after a form POST, the browser GETs `url`."""
    response = RedirectResponse(url, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


class FormGuard:
    """Synchronizer tokens for forms, bound to what a form acts on."""

    def __init__(self, key: bytes, *, secure_cookies: bool, public_url: str | None = None) -> None:
        self._key = key
        self.secure_cookies = secure_cookies
        self._public_origin = origin_of(public_url) if public_url else None

    def new_nonce(self) -> str:
        return secrets.token_urlsafe(24)

    def token(self, nonce: str, binding: str) -> str:
        message = f"{binding}\x00{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def valid(self, request: Request, nonce: str | None, token: str | None, binding: str) -> bool:
        """The form's token matches its cookie's nonce and binding, and the browser does not
        say it was sent from another site or origin."""
        if request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
            return False
        # Pages are served with `Referrer-Policy: no-referrer`, under which browsers send
        # `Origin: null` with their own forms: only a real origin is compared.
        origin = request.headers.get("origin")
        if origin not in (None, "null") and not self._same_origin(request, origin):
            return False
        if not nonce or not token or len(token) != 64:
            return False
        return hmac.compare_digest(self.token(nonce, binding), token)

    def _same_origin(self, request: Request, origin: str) -> bool:
        if origin == self._public_origin:
            return True
        try:
            return urlsplit(origin).netloc == request.headers.get("host")
        except ValueError:
            return False

    def set_cookie(self, response: Response, name: str, value: str, path: str) -> None:
        response.set_cookie(
            name,
            value,
            path=path,
            httponly=True,
            secure=self.secure_cookies,
            samesite="lax",
        )
