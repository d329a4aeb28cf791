"""A loopback HTTPS server with a generated CA: the lifecycle the emulators share.

Subclasses build their aiohttp application (`build_app`); this class owns the certificate,
the socket and the runner. The socket is bound here, so port 0 gives a free port that is read
back — no pick-then-bind race, no reaching into aiohttp's internals.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from devtools.tls import TlsFiles, generate_tls


class LoopbackTlsServer:
    kind = "server"  # named in "not running" errors

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        directory: Path | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._tls = tls
        self._directory = directory
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    async def after_stop(self) -> None:
        """Work to finish once the server no longer accepts requests (default: none)."""

    async def start(self) -> Self:
        if self._tls is None:
            if self._directory is None:
                prefix = self.kind.lower().replace(" ", "-") + "-"
                self._tempdir = tempfile.TemporaryDirectory(prefix=prefix)
                self._directory = Path(self._tempdir.name)
            self._tls = generate_tls(self._directory)
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            await self._runner.cleanup()
            raise
        self._port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self._tls.server_context()).start()
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.after_stop()
        self._port = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
            self._directory = None
            self._tls = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self.kind} is not running")
        return self._port

    @property
    def tls(self) -> TlsFiles:
        if self._tls is None:
            raise RuntimeError(f"the {self.kind} is not running")
        return self._tls

    @property
    def ca_cert(self) -> Path:
        return self.tls.ca_cert

    @property
    def url(self) -> str:
        """e.g. https://127.0.0.1:53211 (no trailing slash)."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"https://{host}:{self.port}"
