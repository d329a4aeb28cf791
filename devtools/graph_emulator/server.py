"""`GraphEmulator`: the HTTPS server, its modules, and the Python control API.

    async with GraphEmulator(directory=tmp_path / "graph") as graph:
        tenant = graph.add_tenant()
        app = graph.add_app(tenant.id, secrets=["s3cret"], application_permissions=["Calendars.ReadWrite"])
        graph.add_user(tenant.id, "adele@contoso.onmicrosoft.com")
        credential = ClientSecretCredential(
            tenant.id, app.client_id, "s3cret", authority=graph.authority,
            disable_instance_discovery=True, connection_verify=str(graph.ca_cert))

Every Python method here has an HTTP twin under `/_emulator/...` (control.py) for when the
emulator runs standalone (`python -m devtools.graph_emulator`).
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from devtools.graph_emulator.batch import BatchModule
from devtools.graph_emulator.calendar_module import CalendarModule
from devtools.graph_emulator.calendar_ops import Calendars
from devtools.graph_emulator.context import EmulatorContext
from devtools.graph_emulator.control import ControlModule
from devtools.graph_emulator.directory import App, FederatedCredential, ManagedIdentity, Tenant, User
from devtools.graph_emulator.identity import IdentityPlatform
from devtools.graph_emulator.mail_module import MailModule
from devtools.graph_emulator.middleware import Pipeline
from devtools.graph_emulator.routing import ControlRouter, EmulatorModule, GraphRouter
from devtools.graph_emulator.subscriptions import SubscriptionsModule
from devtools.graph_emulator.throttling import Fault, FaultKind, MailboxCounters
from devtools.graph_emulator.uploads import UploadSessions
from devtools.graph_emulator.users import UsersModule
from devtools.tls import TlsFiles
from devtools.tls_server import LoopbackTlsServer

# Request bodies up to the largest thing Graph accepts in one request (a 150 MB upload chunk is
# never that big, but a client may try): aiohttp's default of 1 MB would refuse 3 MB attachments.
CLIENT_MAX_SIZE = 160 * 1024 * 1024


def default_modules() -> list[EmulatorModule]:
    """The domain modules every emulator runs. Add new domains (mail, subscriptions, $batch) here."""
    return [UsersModule(), CalendarModule(), MailModule(), SubscriptionsModule(), BatchModule()]


class GraphEmulator(LoopbackTlsServer):
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        directory: Path | None = None,
        latency: float = 0.0,
        *,
        tls: TlsFiles | None = None,
        modules: Iterable[EmulatorModule] | None = None,
    ) -> None:
        super().__init__(host=host, port=port, tls=tls, directory=directory)
        self.ctx = EmulatorContext(lambda: self.url)
        self.ctx.limits.latency_seconds = latency
        self.ctx.uploads = UploadSessions(self.ctx)
        self.identity = IdentityPlatform()
        self.modules: list[EmulatorModule] = [
            self.identity,
            *(modules if modules is not None else default_modules()),
        ]
        self.pipeline = Pipeline(self.ctx)
        self._control = ControlModule(self)
        for module in self.modules:
            module.setup(self.ctx)
            self.ctx.modules[module.name] = module
        self._control.setup(self.ctx)

    # -- lifecycle ---------------------------------------------------------------------------

    kind = "Graph emulator"

    def build_app(self) -> web.Application:
        p = self.pipeline
        app = web.Application(
            middlewares=[p.envelope, p.loopback_only, p.authenticate, p.throttle],
            client_max_size=CLIENT_MAX_SIZE,
        )
        graph_router = GraphRouter(app)
        control_router = ControlRouter(app)
        self.ctx.uploads.routes(graph_router)
        for module in [*self.modules, self._control]:
            module.graph_routes(graph_router)
            module.control_routes(control_router)
        return app

    async def start(self) -> GraphEmulator:
        await super().start()
        # A plain-HTTP loopback listener on the same application, for `$batch` to send its
        # requests through (authenticated, counted, fault-injected and throttled like direct
        # ones) without a TLS handshake per request.
        assert self._runner is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.ctx.internal_url = f"http://127.0.0.1:{int(sock.getsockname()[1])}"
        return self

    async def after_stop(self) -> None:
        await self.ctx.hooks.drain()  # deliver what the last requests triggered

    # -- what clients need -------------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        """What `request_adapter.base_url` takes: https://127.0.0.1:PORT/v1.0."""
        return f"{self.url}/v1.0"

    @property
    def authority(self) -> str:
        """What azure-identity's `authority=` takes (it appends /{tenant}/oauth2/v2.0/token)."""
        return self.url

    authority_host = authority

    @property
    def identity_endpoint(self) -> str:
        """IDENTITY_ENDPOINT for azure-identity's ManagedIdentityCredential (App Service style)."""
        return f"{self.url}/msi/token"

    @property
    def identity_header(self) -> str:
        """IDENTITY_HEADER to go with `identity_endpoint`."""
        return self.identity.identity_header

    def issuer(self, tenant_id: str) -> str:
        """The issuer of the tenant's v2 tokens (managed-identity exchange tokens carry it)."""
        return self.ctx.issuer(tenant_id)

    @property
    def calendar(self) -> Calendars:
        """The calendar module's state and Python API ("act as a person in Outlook")."""
        module = self.ctx.modules["calendar"]
        assert isinstance(module, CalendarModule)
        return module.calendars

    def module(self, name: str) -> Any:
        return self.ctx.modules[name]

    # -- directory ---------------------------------------------------------------------------

    def add_tenant(
        self, tenant_id: str | None = None, name: str = "Contoso", domain: str | None = None
    ) -> Tenant:
        return self.ctx.directory.add_tenant(tenant_id, name, domain)

    def add_app(
        self,
        tenant_id: str,
        *,
        client_id: str | None = None,
        display_name: str = "m365-bridge",
        secrets: list[str] | None = None,
        application_permissions: Iterable[str] = (),
        delegated_permissions: Iterable[str] = (),
        federated_credentials: list[FederatedCredential] | None = None,
        redirect_uris: list[str] | None = None,
    ) -> App:
        return self.ctx.directory.add_app(
            tenant_id,
            client_id=client_id,
            display_name=display_name,
            secrets=secrets,
            application_permissions=set(application_permissions),
            delegated_permissions=set(delegated_permissions),
            federated_credentials=federated_credentials,
            redirect_uris=redirect_uris,
        )

    def app(self, tenant_id: str, client_id: str) -> App:
        found = self.ctx.directory.app(tenant_id, client_id)
        if found is None:
            raise KeyError(f"no app {client_id} in tenant {tenant_id}")
        return found

    def grant(self, tenant_id: str, client_id: str, *permissions: str, delegated: bool = False) -> None:
        """Admin consent for more permissions; tokens issued from now on carry them."""
        app = self.app(tenant_id, client_id)
        (app.delegated_permissions if delegated else app.application_permissions).update(permissions)

    def revoke(self, tenant_id: str, client_id: str, *permissions: str, delegated: bool = False) -> None:
        app = self.app(tenant_id, client_id)
        (app.delegated_permissions if delegated else app.application_permissions).difference_update(
            permissions
        )

    def add_user(self, tenant_id: str, user_principal_name: str, **kwargs: Any) -> User:
        """A user with a mailbox (its default calendar is made on first use)."""
        user = self.ctx.directory.add_user(tenant_id, user_principal_name, **kwargs)
        self.calendar.mailbox(user)
        return user

    def add_managed_identity(
        self, tenant_id: str, *, client_id: str | None = None, principal_id: str | None = None
    ) -> ManagedIdentity:
        return self.ctx.directory.add_managed_identity(
            tenant_id, client_id=client_id, principal_id=principal_id
        )

    def federate(self, tenant_id: str, client_id: str, identity: ManagedIdentity) -> FederatedCredential:
        """Trust a managed identity as a federated credential of an app (what the Bicep does)."""
        credential = FederatedCredential(self.issuer(identity.tenant_id), identity.principal_id)
        self.app(tenant_id, client_id).federated_credentials.append(credential)
        return credential

    def authorize(
        self,
        tenant_id: str,
        client_id: str,
        user: str,
        scopes: list[str],
        redirect_uri: str,
        *,
        code_challenge: str | None = None,
        code_challenge_method: str = "plain",
    ) -> str:
        """An authorization code as if `user` signed in and consented (for AuthorizationCodeCredential);
        bound to a PKCE challenge when one is given."""
        return self.identity.authorize(
            tenant_id,
            client_id,
            user,
            scopes,
            redirect_uri,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )

    def revoke_tokens(self, *, refresh_tokens: bool = False) -> None:
        """Every access token issued so far is refused from now on (401, expired), as after a
        tenant-wide revocation; clients must get new ones."""
        self.pipeline.first_valid_token = self.identity.next_token_number
        if refresh_tokens:
            self.identity.revoke_refresh_tokens()

    # -- throttling, faults, counters ---------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change limits: concurrency, budget, budget_window_seconds, concurrency_retry_after,
        latency_seconds (names as in throttling.Limits or their camelCase JSON forms)."""
        self.ctx.limits.update(settings)

    @property
    def latency(self) -> float:
        return self.ctx.limits.latency_seconds

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.ctx.limits.latency_seconds = seconds

    def add_fault(
        self,
        kind: FaultKind = "status",
        *,
        status: int = 503,
        count: int = 1,
        retry_after: int | None = None,
        latency_seconds: float = 0.0,
        mailbox: str | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> Fault:
        """Serve the next `count` matching Graph requests badly (see throttling.Fault)."""
        mailbox_id = self.ctx.resolve_user(mailbox).id if mailbox else None
        return self.ctx.faults.add(
            Fault(kind, status, count, retry_after, latency_seconds, mailbox_id, path, method)
        )

    def clear_faults(self) -> None:
        self.ctx.faults.clear()

    def counters(self, user: str) -> MailboxCounters:
        """A copy of one mailbox's counters (by id or UPN)."""
        found = self.ctx.directory.any_user(user)
        return self.ctx.counters.get(found.id if found else user.lower())

    def all_counters(self) -> dict[str, MailboxCounters]:
        return self.ctx.counters.snapshot()

    def reset_counters(self, user: str | None = None) -> None:
        if user is None:
            self.ctx.counters.reset()
        else:
            found = self.ctx.directory.any_user(user)
            self.ctx.counters.reset(found.id if found else user.lower())

    # -- time and sync state -----------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.ctx.clock.now()

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        return self.ctx.clock.advance(delta)

    def set_now(self, when: dt.datetime, *, freeze: bool = False) -> dt.datetime:
        return self.ctx.clock.set(when, freeze=freeze)

    def expire_delta_tokens(self, user: str | None = None) -> int:
        """Drop delta/skip states (all, or one mailbox's): the next call with them gets 410."""
        return self.ctx.sync_states.expire(self.ctx.resolve_user(user).id if user else None)

    def reset(self) -> None:
        """Forget everything: directory, mailboxes, faults, counters, tokens' state, clock."""
        for module in self.modules:
            module.reset()
        self.ctx.directory.reset()
        self.ctx.faults.clear()
        self.ctx.counters.reset()
        self.ctx.throttle.reset()
        self.ctx.sync_states.expire()
        self.ctx.uploads.reset()
        self.ctx.clock.reset()
