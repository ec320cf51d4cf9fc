"""The demo page against a hostile server named by ?endpoint=: what it sends is shown as text, never run.

The page is served by the service (its real headers, Content-Security-Policy included); the
hostile server is a small HTTP server on loopback whose every field the page shows holds markup
that would set `window.__xss` if it ever became HTML. The page is also checked with the policy
bypassed, so that the page's own code is what keeps the markup inert, not only the policy.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import numpy as np
import pytest
import soundfile as sf

from helpers import served


def payload(field: str) -> str:
    return f'<img src=x onerror="window.__xss=(window.__xss||[]).concat(\'{field}\')">{field}'


def hostile_wav() -> str:
    rate = 24000
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * 0.3)) / rate).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, tone, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(out.getvalue()).decode("ascii")


class Hostile(BaseHTTPRequestHandler):
    """Answers the page's requests with markup in every field it shows."""

    wav = hostile_wav()

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "X-TTS-Provider")
        self.end_headers()
        self.wfile.write(data)

    def do_OPTIONS(self):
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST, GET")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Request-Id")
        self.end_headers()

    def do_GET(self):
        if self.path == "/health":
            return self._send(200, {"status": "ok", "device": payload("device"), "model": payload("model"),
                                    "provider": payload("health-provider")})
        if self.path == "/voices":
            entry = {"engine": payload("engine"), "model": payload("model"),
                     "voices": [payload("voice"), "plain"], "default": payload("voice")}
            return self._send(200, {"languages": {"es": entry, payload("language"): entry}})
        return self._send(404, {"error": payload("404")})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if body.get("text") == "error":
            return self._send(503, {"error": payload("error"), "fallback": True})
        return self._send(200, {"audioContent": self.wav, "provider": payload("provider"), "model": payload("model"),
                                "language": "es", "duration": 0.3, "format": "wav", "sample_rate": 24000})


@pytest.fixture(scope="module")
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def page_server():
    """The service's own /web/ (no model needed to serve the page)."""
    from tts_service import create_app
    from tts_service.config import Settings

    with served(create_app(Settings.from_env({"TTS_LOG_FILE": ""}))) as base:
        yield base


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["served-policy", "page-code-alone"])
def test_hostile_endpoint_data_is_shown_as_text(browser, page_server, hostile, bypass_csp):
    context = browser.new_context(bypass_csp=bypass_csp)
    # Headless Chromium has no voices: the browser voice is recorded and answered at once.
    context.add_init_script("""
      speechSynthesis.speak = (u) => setTimeout(() => { u.onstart && u.onstart(new Event('start'));
                                                        u.onend && u.onend(new Event('end')); }, 10);""")
    page = context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{page_server}/web/?endpoint={hostile}/tts")
        page.wait_for_function("() => document.getElementById('health').textContent.startsWith('Listo')", timeout=20000)
        assert page.text_content("#health") == "Listo · " + payload("device")
        page.wait_for_function("() => document.querySelectorAll('#voice option').length === 3", timeout=20000)
        assert payload("voice") + " (predeterminada)" in page.eval_on_selector_all(
            "#voice option", "options => options.map(o => o.textContent)")
        assert payload("language") in page.eval_on_selector_all(
            "#language option", "options => options.map(o => o.textContent)")

        page.click("#speak")
        page.wait_for_function("() => document.getElementById('message').textContent.startsWith('Listo')", timeout=20000)
        assert page.text_content("#provider") == payload("provider")

        page.fill("#text", "error")
        page.click("#speak")
        page.wait_for_function("() => document.getElementById('message').textContent.includes('error')", timeout=20000)
        assert payload("error") in page.text_content("#message")

        page.wait_for_timeout(300)  # an injected <img> would have fired its onerror by now
        assert page.evaluate("window.__xss") is None, "markup from the endpoint ran as script"
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert problems == [], "the page itself must run under its policy without violations"
    finally:
        context.close()


def test_page_is_served_with_a_policy_and_nosniff(page_server):
    import requests

    with requests.Session() as session:
        for path in ("/web/", "/web/page.js", "/web/page.css", "/web/tts-integration.js"):
            response = session.get(f"{page_server}{path}", timeout=10)
            assert response.status_code == 200, path
            policy = response.headers["Content-Security-Policy"]
            assert "default-src 'self'" in policy and "script-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        html = session.get(f"{page_server}/web/", timeout=10).text
    assert "<script>" not in html and "<style>" not in html and " style=" not in html, "inline code or style"
