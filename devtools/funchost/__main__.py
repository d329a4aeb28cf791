"""`python -m devtools.funchost`: run the project's Function App locally, like `func start`.

local.settings.json is applied to the environment *before* the app is imported, because app
modules may read settings at import time; variables already set in the shell win.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from devtools.funchost.host import FunctionHost
from devtools.funchost.settings import FunctionHostError, apply_local_settings, load_local_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 7071


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.funchost", description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument(
        "--port", type=int, default=None, help="HTTP port (default: Host.LocalHttpPort, else 7071; 0 = any)"
    )
    parser.add_argument(
        "--settings", type=Path, default=None, help="local.settings.json (default: the project's, if present)"
    )
    parser.add_argument(
        "--host-json", type=Path, default=None, help="host.json (default: the project's, if present)"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def load_app(spec: str) -> Any:
    """Import `module:attribute`; the project root is put on sys.path, as `func start` runs there."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise FunctionHostError(f"--app {spec!r}: expected module:attribute, e.g. function_app:app")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FunctionHostError(f"--app {spec!r}: cannot import {module_name}: {err}") from err
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise FunctionHostError(f"--app {spec!r}: {module_name} has no attribute {attribute}") from None


async def serve(host: FunctionHost) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with host:
        print("\n".join(host.describe()), flush=True)
        await stop.wait()
        print("Stopping the host...", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the Storage SDK logs every request at INFO; the host's own lines are what a developer needs
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        settings_path = args.settings or (ROOT / "local.settings.json")
        port = args.port
        if args.settings is not None or settings_path.exists():
            local = load_local_settings(settings_path)
            apply_local_settings(local)
            if port is None:
                port = local.http_port
        host_json = args.host_json
        if host_json is None and (ROOT / "host.json").exists():
            host_json = ROOT / "host.json"
        app = load_app(args.app)
        host = FunctionHost(app, host_json=host_json, port=DEFAULT_PORT if port is None else port)
        asyncio.run(serve(host))
    except FunctionHostError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # typically the port is taken
        print(f"error: cannot start the host: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
