"""A stateful Microsoft Graph (v1.0) and Entra ID emulator on loopback HTTPS, for the real
`msgraph-sdk` and `azure-identity` clients. See README.md in this folder for what it covers."""

from __future__ import annotations

from devtools.graph_emulator.context import AuthContext, EmulatorContext, GraphCall, Permissions, graph_call
from devtools.graph_emulator.directory import App, FederatedCredential, ManagedIdentity, Tenant, User
from devtools.graph_emulator.errors import GraphError
from devtools.graph_emulator.hooks import Change
from devtools.graph_emulator.routing import ControlRouter, EmulatorModule, GraphRouter
from devtools.graph_emulator.server import GraphEmulator, default_modules
from devtools.graph_emulator.throttling import Fault, MailboxCounters

__all__ = [
    "App",
    "AuthContext",
    "Change",
    "ControlRouter",
    "EmulatorContext",
    "EmulatorModule",
    "Fault",
    "FederatedCredential",
    "GraphCall",
    "GraphEmulator",
    "GraphError",
    "GraphRouter",
    "MailboxCounters",
    "ManagedIdentity",
    "Permissions",
    "Tenant",
    "User",
    "default_modules",
    "graph_call",
]
