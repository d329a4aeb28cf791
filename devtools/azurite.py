"""Start and stop Azurite (the Azure Storage emulator) for tests and the demo.

Azurite runs in memory on loopback; every service binds port 0 and we read the ports it got
from its start-up lines, so parallel runs never collide and there is no pick-then-bind race.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from core.settings import azurite_connection_string

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")


class AzuriteError(RuntimeError):
    pass


class Azurite:
    """`with Azurite() as az: az.connection_string` — a private, in-memory Azurite."""

    def __init__(self, host: str = "127.0.0.1", start_timeout: float = 60.0) -> None:
        self.host = host
        self.start_timeout = start_timeout
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @staticmethod
    def binary() -> Path:
        path = ROOT / "node_modules" / ".bin" / "azurite"
        if not path.exists():
            raise AzuriteError(f"{path} not found: run `npm ci` (the Makefile does) to install Azurite")
        return path

    @property
    def connection_string(self) -> str:
        if not self.ports:
            raise AzuriteError("Azurite is not running")
        return azurite_connection_string(self.host, self.ports)

    def start(self) -> Azurite:
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        flags = [
            str(self.binary()),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--silent",
        ]
        for svc in ("blob", "queue", "table"):
            flags += [f"--{svc}Host", self.host, f"--{svc}Port", "0"]
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            flags,
            cwd=self._workdir.name,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        seen: list[str] = []
        while len(self.ports) < 3:
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError("Azurite did not start in time:\n" + "".join(seen[-20:]))
            line = self._proc.stdout.readline()
            if not line:
                self.stop()
                raise AzuriteError("Azurite exited during start-up:\n" + "".join(seen[-20:]))
            seen.append(line)
            match = _LISTENING.search(line)
            if match:
                self.ports[match.group(1)] = int(match.group(2))
        # keep draining its output so a full pipe never blocks it
        threading.Thread(target=self._drain, daemon=True, name="azurite-output").start()
        return self

    def _drain(self) -> None:
        proc = self._proc
        if proc is not None and proc.stdout is not None:
            for _ in proc.stdout:
                pass

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.ports = {}
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
