"""The Wyoming server: the `wyoming` package's own (`AsyncServer.from_uri`, tcp:// or unix://), its
asyncio loop in a daemon thread, and its announcement over mDNS when asked. Each connection is a
`wyoming.WyomingHandler`, the protocol's adapter."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from wyoming.server import AsyncServer, AsyncTcpServer

from ..config import ConfigError
from .wyoming import WyomingHandler

logger = logging.getLogger(__name__)


class WyomingServer:
    """The Wyoming server (tcp:// or unix://) and the asyncio loop it runs on, in a daemon thread.

    Its syntheses are sessions like the WebSockets' and share their slots."""

    def __init__(self, service):
        self.service = service
        self.settings = service.settings
        self.uri = self.settings.resolved_wyoming_uri()
        self.handlers: set[WyomingHandler] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: AsyncServer | None = None
        self._zeroconf = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingHandler:
        handler = WyomingHandler(self, reader, writer)
        self.handlers.add(handler)
        return handler

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Listen (and announce over mDNS when asked); a port in use or a missing package is a ConfigError."""
        if self.settings.wyoming_zeroconf:
            _zeroconf_module()  # before anything starts: a missing package fails at once
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="wyoming")
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"the Wyoming server did not start within {timeout:.0f} s")
        if self._error is not None:
            self._thread.join(5)
            error, self._error = self._error, None
            if isinstance(error, ConfigError):
                raise error
            raise ConfigError(f"Wyoming: cannot listen on {self.uri} (TTS_WYOMING_URI, or TTS_WYOMING_HOST and "
                              f"TTS_WYOMING_PORT): {error}") from None
        logger.info("Wyoming server on %s%s", self.uri, " (announced over mDNS)" if self._zeroconf is not None else "")

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:
            self._error = exc
            loop.run_until_complete(self._close())
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _open(self) -> None:
        self._server = AsyncServer.from_uri(self.uri)
        await self._server.start(self._handler)
        if self.settings.wyoming_zeroconf and isinstance(self._server, AsyncTcpServer):
            self._zeroconf = await _announce(self._server.host, self._server.port)

    async def _close(self) -> None:
        for handler in list(self.handlers):
            handler.abort()
        if self._zeroconf is not None:
            zeroconf, service = self._zeroconf
            self._zeroconf = None
            try:
                await zeroconf.async_unregister_service(service)
            finally:
                await zeroconf.async_close()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop listening, end every connection (freeing its jobs) and the loop's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout)
        except Exception as exc:
            logger.warning("Wyoming server did not close cleanly: %s", exc)
        try:
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # closed meanwhile
            pass
        thread.join(timeout)


def _zeroconf_module():
    try:
        from zeroconf import asyncio as zeroconf_asyncio
    except ImportError:
        raise ConfigError("TTS_WYOMING_ZEROCONF=true needs the zeroconf package: "
                          ".venv/bin/pip install zeroconf (or set TTS_WYOMING_ZEROCONF=false).") from None
    return zeroconf_asyncio


async def _announce(host: str, port: int):
    """Register `_wyoming._tcp` as wyoming/zeroconf.py does, keeping the handles to unregister at stop."""
    zeroconf_asyncio = _zeroconf_module()
    address = host
    if host in ("", "0.0.0.0", "::"):
        # The address other machines reach us on: the one the route to the mDNS group leaves from (no packet sent).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(("224.0.0.251", 5353))
                address = probe.getsockname()[0]
            except OSError as exc:
                raise ConfigError(f"TTS_WYOMING_ZEROCONF: no network address to announce ({exc}); "
                                  "set TTS_WYOMING_HOST to this machine's LAN address.") from None
    name = socket.gethostname().split(".")[0] or "kyutai-tts"
    service = zeroconf_asyncio.AsyncServiceInfo(
        "_wyoming._tcp.local.", f"kyutai-tts-{name}._wyoming._tcp.local.",
        addresses=[socket.inet_aton(address)], port=port)
    zeroconf = zeroconf_asyncio.AsyncZeroconf()
    await zeroconf.async_register_service(service)
    return zeroconf, service
