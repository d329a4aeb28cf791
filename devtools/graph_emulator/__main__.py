"""`python -m devtools.graph_emulator --dir .local/graph`: run the emulator until Ctrl-C.

With `--demo` it seeds a tenant, an app with a secret and the bridge's permissions, and two users,
and prints what a client needs (tenant id, client id, secret). Without it the directory is empty:
seed it through the control API (`POST /_emulator/tenants`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

from devtools.graph_emulator.server import GraphEmulator

DEMO_SECRET = "demo-secret"  # noqa: S105 - a fixed, printed secret for a local demo tenant
DEMO_PERMISSIONS = (
    "Calendars.ReadWrite",
    "Mail.ReadWrite",
    "Mail.Send",
    "MailboxSettings.Read",
    "User.Read.All",
)


async def _serve(args: argparse.Namespace, directory: Path) -> None:
    async with GraphEmulator(args.host, args.port, directory, args.latency) as graph:
        print(f"Graph emulator:  {graph.graph_url}", flush=True)
        print(
            f"Authority:       {graph.authority}   (authority=..., disable_instance_discovery=True)",
            flush=True,
        )
        print(f"CA certificate:  {graph.ca_cert}   (connection_verify=..., or SSL_CERT_FILE=...)", flush=True)
        print(f"Control API:     {graph.url}/_emulator/", flush=True)
        print(
            f"Managed identity: IDENTITY_ENDPOINT={graph.identity_endpoint} "
            f"IDENTITY_HEADER={graph.identity_header}",
            flush=True,
        )
        if args.demo:
            tenant = graph.add_tenant(name="Contoso")
            app = graph.add_app(tenant.id, secrets=[DEMO_SECRET], application_permissions=DEMO_PERMISSIONS)
            for upn in (f"adele@{tenant.domain}", f"megan@{tenant.domain}"):
                graph.add_user(tenant.id, upn)
            print(
                f"Demo tenant:     {tenant.id}  client id {app.client_id}  secret {DEMO_SECRET}", flush=True
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Microsoft Graph + Entra ID emulator on loopback HTTPS")
    parser.add_argument(
        "--dir", default=".local/graph", help="where the CA and server certificate are written"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every Graph request")
    parser.add_argument("--demo", action="store_true", help="seed a demo tenant, app and users")
    args = parser.parse_args(argv)
    # absolute: the printed CA path must work from any working directory
    asyncio.run(_serve(args, Path(args.dir).absolute()))


if __name__ == "__main__":
    main()
