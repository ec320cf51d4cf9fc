"""The demo page and the browser client, served by the service itself under /web/."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, redirect, send_from_directory

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    return redirect("/web/", code=302)


@bp.get("/web/")
def page():
    return send_from_directory(WEB_DIR, "index.html")


@bp.get("/web/<path:name>")
def asset(name: str):
    return send_from_directory(WEB_DIR, name)
