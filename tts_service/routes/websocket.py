"""WebSocket plumbing shared by the streaming protocols: limits, the upgrade, the receive loop.

Each protocol is a small adapter over the speech core's `Session`: `kyutai.py` speaks Kyutai
moshi-server's protocol on `/api/tts_streaming` (and its POST form, and `/api/modules_info`),
`ws_json.py` this service's JSON protocol on `/ws/tts`. Both add their routes to this module's
blueprint, whose name the security layer uses for its key check and the shared rate budget.
A refusal closes the socket with the code the table below gives its kind (RFC 6455's codes).

Every socket gets the same limits: no permessage-deflate (a message's size is what was sent, so
the limit cannot be inflated past), messages up to `TTS_MAX_BODY_BYTES` (larger closes the socket
with 1009), a server ping every `TTS_WS_PING_INTERVAL` seconds (no pong by the next one closes
it), and a close after `TTS_WS_IDLE_TIMEOUT` seconds without a message while the text is still
open, as moshi-server's receive loop does (`rust/moshi-server/src/py_module.rs`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from flask import Blueprint, Response, g, request
from simple_websocket import ConnectionClosed, Server

from ..service import get_service
from ..speech import refusals
from ..speech.refusals import Refusal
from ..speech.session import Session

logger = logging.getLogger(__name__)

bp = Blueprint("websocket", __name__)


# A refusal's kind as the close code that ends the socket.
CLOSE_CODES = {refusals.BAD_REQUEST: 1008, refusals.UNKNOWN_VOICE: 1008, refusals.NOTHING_TO_SAY: 1008,
               refusals.FORBIDDEN: 1008, refusals.CONFLICT: 1008,
               refusals.TOO_LARGE: 1009, refusals.BUSY: 1013, refusals.UNAVAILABLE: 1013,
               refusals.TIMED_OUT: 1013, refusals.INTERNAL: 1011}


def protocol_error(message: str) -> Refusal:
    """The client broke the protocol: a bad request, answered with an error message and a close."""
    return Refusal(refusals.BAD_REQUEST, message)


def authorized() -> bool:
    """Whether this upgrade may go on: no key is set, or the security hook accepted the one sent (a
    header, or the `api_key` / `auth_id` query a browser or Kyutai's clients use). The hook lets a
    WebSocket through either way, so that the refusal is said in-protocol."""
    return not get_service().settings.api_key or bool(g.get("key_ok"))


class _Upgraded(Response):
    """What the view returns once the socket was served: nothing more goes on the wire."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def __call__(self, environ, start_response):
        if self.mode == "gunicorn":
            raise StopIteration()
        if self.mode == "werkzeug":
            return super().__call__(environ, start_response)
        return []


def upgrade(handler: Callable[[Server], None]) -> Response:
    """Accept the WebSocket with the service's limits and run `handler(ws)` until it returns.

    Like flask-sock's route decorator, but only after the view has had its say: a view may still
    answer with an ordinary HTTP status (401, 400) before calling this."""
    settings = get_service().settings
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)  # no compression: sizes are as sent
    ws = Server(request.environ, ping_interval=settings.ws_ping_interval,
                max_message_size=settings.max_body_bytes)
    try:
        handler(ws)
    except ConnectionClosed:
        pass
    try:
        ws.close()
    except Exception:  # already closed by either side
        pass
    return _Upgraded(ws.mode)


class Channel:
    """Sending on one socket from two threads (the receive loop and the session's), and closing once."""

    def __init__(self, ws: Server, encode_error: Callable[[Refusal], object | None]):
        self.ws = ws
        self.encode_error = encode_error
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, data) -> None:
        with self.lock:
            if not self.closed.is_set():
                self.ws.send(data)

    def close(self, code: int = 1000, message: str = "done") -> None:
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
            try:
                self.ws.close(reason=code, message=message[:120])
            except ConnectionClosed:
                pass

    def fail(self, refusal: Refusal) -> None:
        """The protocol's error message (when it has one), then a close whose code and reason say why."""
        try:
            error = self.encode_error(refusal)
            if error is not None:
                self.send(error)
        except ConnectionClosed:
            pass
        self.close(CLOSE_CODES[refusal.kind], refusal.message)


def serve(ws: Server, channel: Channel, session: Session, handle: Callable[[object], None]) -> None:
    """Feed the client's messages to `handle` until the session is over or the client leaves."""
    settings = get_service().settings
    idle_limit = settings.ws_idle_timeout
    try:
        while not channel.closed.is_set():
            data = ws.receive(timeout=min(0.25, idle_limit))
            if data is None:
                if session.finished:
                    break
                if not session.ended and time.monotonic() - session.last_activity > idle_limit:
                    session.cancel()
                    channel.fail(Refusal(refusals.TIMED_OUT, f"no message for {idle_limit:g} s; closing"))
                    break
                continue
            handle(data)
        session.wait(timeout=5)
    except Refusal as refusal:
        session.cancel()
        channel.fail(refusal)
    except ConnectionClosed:
        session.cancel()
    except Exception:
        logger.exception("text stream failed")
        session.cancel()
        channel.fail(Refusal(refusals.INTERNAL, "internal error; see the server log"))
    finally:
        if not session.finished:
            session.cancel()

