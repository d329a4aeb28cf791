"""host.json and local.settings.json, read the way `func start` reads them.

Only the parts this host acts on are parsed; everything else in host.json is ignored, as the
real host ignores extensions it has not loaded. Values are validated up front so a typo in
host.json fails at start-up with the file and key in the message, not as odd polling later.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import azurite_connection_string

DEFAULT_CONNECTION = "AzureWebJobsStorage"
_MAX_BATCH_SIZE = 32  # the Storage "Get Messages" API returns at most 32 messages per call

# .NET TimeSpan "[d.]hh:mm:ss[.fffffff]", the format host.json uses for durations.
_TIMESPAN = re.compile(
    r"^(?:(?P<days>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2})(?:\.(?P<f>\d{1,7}))?$"
)
_SETTING_REF = re.compile(r"%([^%]+)%")


class FunctionHostError(RuntimeError):
    """A start-up problem: bad configuration, a missing setting, an unsupported binding."""


def parse_timespan(value: object, *, what: str = "value") -> float:
    """Seconds from a host.json duration: a TimeSpan string ("00:01:00") or an integer of ms.

    The real host accepts milliseconds only as a JSON number; a bare digit string would be read
    by .NET as *days*, so it is rejected here rather than silently guessed.
    """
    if isinstance(value, bool):  # bool is an int subclass; `true` is never a duration
        raise FunctionHostError(f"{what}: {value!r} is not a TimeSpan ('hh:mm:ss') or milliseconds")
    if isinstance(value, int | float):
        if value < 0:
            raise FunctionHostError(f"{what}: {value!r} is negative")
        return float(value) / 1000.0
    if isinstance(value, str):
        match = _TIMESPAN.match(value.strip())
        if match:
            hours, minutes, seconds = int(match["h"]), int(match["m"]), int(match["s"])
            if hours > 23 or minutes > 59 or seconds > 59:
                raise FunctionHostError(f"{what}: {value!r} has an hour, minute or second out of range")
            fraction = float("0." + match["f"]) if match["f"] else 0.0
            days = int(match["days"] or 0)
            return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds + fraction
    raise FunctionHostError(f"{what}: {value!r} is not a TimeSpan ('hh:mm:ss') or milliseconds")


def resolve_setting_refs(value: str, env: Mapping[str, str], *, what: str) -> str:
    """Replace every `%NAME%` in `value` with the app setting NAME, as binding expressions do.

    A missing setting is a start-up error naming it, like the real host's
    "'%NAME%' does not resolve to a value", because a silently empty queue name or schedule
    would otherwise poll the wrong queue or never fire.
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise FunctionHostError(
                f"{what}: '%{name}%' does not resolve to a value (app setting {name} is not set)"
            )
        return env[name]

    return _SETTING_REF.sub(lookup, value)


def resolve_connection(name: str | None, env: Mapping[str, str], *, what: str) -> str:
    """The storage connection string a trigger's `connection` names.

    Like the real host: an empty name means `AzureWebJobsStorage`; a name is also tried with the
    `AzureWebJobs` prefix; `UseDevelopmentStorage=true` means the emulator on its default ports.
    Identity-based connections (`NAME__queueServiceUri`) need Entra ID, which a local run does not
    have, so they are refused with a message saying so.
    """
    name = name or DEFAULT_CONNECTION
    value = env.get(name) or env.get(f"AzureWebJobs{name}")
    if not value:
        if any(key.startswith(f"{name}__") for key in env):
            raise FunctionHostError(
                f"{what}: connection {name} is identity-based ({name}__...); "
                "the local host only supports connection strings"
            )
        raise FunctionHostError(f"{what}: connection setting {name} is not set")
    if value.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return azurite_connection_string()
    return value


@dataclass(frozen=True)
class QueuesConfig:
    """`extensions.queues` in host.json, with the real host's defaults."""

    max_dequeue_count: int = 5
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    batch_size: int = 16
    new_batch_threshold: int = 8
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host honours."""

    route_prefix: str = "api"
    queues: QueuesConfig = field(default_factory=QueuesConfig)


def _int(section: Mapping[str, Any], key: str, default: int, *, low: int, high: int, where: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FunctionHostError(f"{where}.{key}: {value!r} must be an integer from {low} to {high}")
    return value


def parse_host_config(data: Mapping[str, Any], *, source: str = "host.json") -> HostConfig:
    """Validate the host.json document `data` (already parsed JSON)."""
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, Mapping):
        raise FunctionHostError(f"{source}: extensions must be an object")
    http = extensions.get("http") or {}
    queues = extensions.get("queues") or {}
    if not isinstance(http, Mapping) or not isinstance(queues, Mapping):
        raise FunctionHostError(f"{source}: extensions.http and extensions.queues must be objects")

    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise FunctionHostError(f"{source}: extensions.http.routePrefix must be a string")

    where = f"{source}: extensions.queues"
    batch_size = _int(queues, "batchSize", 16, low=1, high=_MAX_BATCH_SIZE, where=where)
    threshold = _int(queues, "newBatchThreshold", batch_size // 2, low=0, high=10_000, where=where)
    encoding = queues.get("messageEncoding", "base64")
    if not isinstance(encoding, str) or encoding.lower() not in ("base64", "none"):
        raise FunctionHostError(f"{where}.messageEncoding: {encoding!r} must be 'base64' or 'none'")
    max_polling = parse_timespan(
        queues.get("maxPollingInterval", "00:01:00"), what=f"{where}.maxPollingInterval"
    )
    if max_polling < 0.1:
        # the real host rejects intervals under 100 ms: polling faster only burns transactions
        raise FunctionHostError(f"{where}.maxPollingInterval must be at least 100 ms")
    return HostConfig(
        route_prefix=prefix.strip("/"),
        queues=QueuesConfig(
            max_dequeue_count=_int(queues, "maxDequeueCount", 5, low=1, high=10_000, where=where),
            max_polling_interval=max_polling,
            visibility_timeout=parse_timespan(
                queues.get("visibilityTimeout", "00:00:00"), what=f"{where}.visibilityTimeout"
            ),
            batch_size=batch_size,
            new_batch_threshold=threshold,
            message_encoding=encoding.lower(),
        ),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))  # tools often write a BOM
    except FileNotFoundError:
        raise FunctionHostError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise FunctionHostError(f"{path}: not valid JSON ({err})") from None


def load_host_json(path: str | Path | None) -> HostConfig:
    """Read host.json; `None` means "no file", which gives the real host's defaults."""
    if path is None:
        return HostConfig()
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise FunctionHostError(f"{path}: must hold a JSON object")
    return parse_host_config(data, source=str(path))


@dataclass(frozen=True)
class LocalSettings:
    """`local.settings.json`: the app settings (`Values`) and `Host.LocalHttpPort`."""

    values: dict[str, str]
    http_port: int | None = None


def load_local_settings(path: str | Path) -> LocalSettings:
    """Read local.settings.json. Values must be strings, as app settings always are."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, Mapping):
        raise FunctionHostError(f"{path}: must hold a JSON object")
    raw_values = data.get("Values") or {}
    if not isinstance(raw_values, Mapping):
        raise FunctionHostError(f"{path}: Values must be an object")
    values: dict[str, str] = {}
    for key, value in raw_values.items():
        if not isinstance(value, str):
            raise FunctionHostError(f"{path}: Values.{key} must be a string (app settings are strings)")
        values[str(key)] = value
    host = data.get("Host") or {}
    port = host.get("LocalHttpPort") if isinstance(host, Mapping) else None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise FunctionHostError(f"{path}: Host.LocalHttpPort must be a port number")
    return LocalSettings(values=values, http_port=port)


def apply_local_settings(
    settings: LocalSettings, environ: MutableMapping[str, str] | None = None
) -> list[str]:
    """Copy `Values` into the environment for keys not already set, as `func start` does.

    Variables already in the environment win so a shell export can override the file for one
    run. Returns the names that were applied.
    """
    target = os.environ if environ is None else environ
    applied = []
    for key, value in settings.values.items():
        if key not in target:
            target[key] = value
            applied.append(key)
    return applied
