"""The demo page and the browser client, served by the service itself under /web/.

Every answer under /web/ carries a Content-Security-Policy: scripts and styles only from this
origin (the page has no inline script or style), no plugins, no framing. `connect-src` allows any
http(s) and ws(s) server because the page may talk to another service named by `?endpoint=` or
set later with `KyutaiTTS.configure`; the page writes what such a server sends as text only.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self' http: https: ws: wss:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

bp = Blueprint("web", __name__)


@bp.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def index():
    return redirect("/web/", code=302)


@bp.get("/web/")
def page():
    return send_from_directory(WEB_DIR, "index.html")


@bp.get("/web/<path:name>")
def asset(name: str):
    return send_from_directory(WEB_DIR, name)
