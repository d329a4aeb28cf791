"""Health report: is each storage service reachable, and which version is running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Probe = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    status: Literal["ok", "degraded"]
    version: str
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": self.version,
            "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.checks},
        }


def _describe(exc: BaseException) -> str:
    # Name the failure without echoing SDK messages, which can carry request URLs and headers.
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__}" + (f" (HTTP {status})" if status else "")


async def _run(name: str, probe: Probe, per_probe_seconds: float) -> Check:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), per_probe_seconds)
    except TimeoutError:
        error: str | None = f"no answer within {per_probe_seconds:g} s"
    except Exception as exc:
        error = _describe(exc)
    else:
        error = None
    return Check(name, error is None, round((time.perf_counter() - started) * 1000, 1), error)


async def check_health(
    version: str, probes: Mapping[str, Probe], per_probe_seconds: float = 5.0
) -> HealthReport:
    """Run every probe concurrently, each bounded by `per_probe_seconds`."""
    checks = await asyncio.gather(*(_run(name, probe, per_probe_seconds) for name, probe in probes.items()))
    status: Literal["ok", "degraded"] = "ok" if all(c.ok for c in checks) else "degraded"
    return HealthReport(status, version, tuple(checks))
