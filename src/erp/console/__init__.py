"""The operator console: one page (`GET /console`), its script and its style sheet, served as they
are from this package. No front-end toolchain and nothing from elsewhere.

The page is served without the operator token: it holds no data and no secret (a browser cannot
send a bearer token when it navigates to a page anyway). It asks the operator for the token, keeps
it in the tab's sessionStorage, and sends it as `Authorization: Bearer` on each call it makes to the
operator endpoints (GET /accounts, /projections, /projections/parked, /operations; POST .../rebuild,
.../parked/retry and /skip), which check it as they check every other caller's. Its
Content-Security-Policy lets it load its own script and style only and talk to its own origin only,
so a value it shows (an account's name, a parked event's reason, written as text) cannot run.
"""

from __future__ import annotations

from importlib.resources import files

from litestar import Response, Router, get

_FILES = files(__name__)
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _asset(name: str, media_type: str) -> Response[bytes]:
    return Response((_FILES / name).read_bytes(), media_type=media_type, headers=_HEADERS)


@get("/", include_in_schema=False, sync_to_thread=False)
def page() -> Response[bytes]:
    return _asset("index.html", "text/html; charset=utf-8")


@get("/console.js", include_in_schema=False, sync_to_thread=False)
def script() -> Response[bytes]:
    return _asset("console.js", "text/javascript; charset=utf-8")


@get("/console.css", include_in_schema=False, sync_to_thread=False)
def style() -> Response[bytes]:
    return _asset("console.css", "text/css; charset=utf-8")


@get("/icon.svg", include_in_schema=False, sync_to_thread=False)
def icon() -> Response[bytes]:
    return _asset("icon.svg", "image/svg+xml")


console = Router("/console", route_handlers=[page, script, style, icon])
"""GET /console and its script, style sheet and icon: open to anyone (see above)."""
