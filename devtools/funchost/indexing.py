"""Turn a `func.FunctionApp` into the list of functions this host can run, or say why not.

`FunctionApp.get_functions()` raises ValueError when called twice on one app object, yet tests
start many hosts on the same app, so the raw index is cached per app object. `%SETTING%`
references are *not* resolved here: each host resolves them against its own settings.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devtools.funchost.settings import FunctionHostError

HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
_TRIGGERS = {HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER}
# The parameter name through which the worker passes `func.Context`, when a function asks for it.
CONTEXT_PARAM = "context"


class _Binding(Protocol):
    def get_dict_repr(self) -> dict[str, Any]: ...


class _Function(Protocol):
    def get_function_name(self) -> str: ...
    def get_user_function(self) -> Callable[..., Any]: ...
    def get_bindings(self) -> list[Any]: ...


class IndexableApp(Protocol):
    """What the host needs from an app: `func.FunctionApp` and `func.Blueprint`-built apps."""

    def get_functions(self) -> list[Any]: ...


def _plain(value: object) -> Any:
    """Binding dicts hold enums (`AuthLevel.FUNCTION`, `HttpMethod.GET`); keep their values."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)


@dataclass(frozen=True)
class IndexedFunction:
    """One function of the app: its trigger binding (plain values) and how to call it."""

    name: str
    user_function: Callable[..., Any]
    trigger: Mapping[str, Any]
    wants_context: bool

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def trigger_param(self) -> str:
        return str(self.trigger["name"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)


# An app's index, or the error indexing it gave: get_functions() cannot be asked a second time.
_CACHE: weakref.WeakKeyDictionary[Any, list[IndexedFunction] | FunctionHostError] = (
    weakref.WeakKeyDictionary()
)


def _index_one(fn: _Function) -> IndexedFunction:
    name = fn.get_function_name()
    user_function = fn.get_user_function()
    bindings = [{k: _plain(v) for k, v in b.get_dict_repr().items()} for b in fn.get_bindings()]
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise FunctionHostError(f"function '{name}': expected exactly one trigger, found {len(triggers)}")
    trigger = triggers[0]
    kind = str(trigger["type"])
    if kind not in _TRIGGERS:
        raise FunctionHostError(
            f"function '{name}': trigger type '{kind}' is not supported by the local host "
            f"(supported: {', '.join(sorted(_TRIGGERS))})"
        )
    for binding in bindings:
        if binding is trigger:
            continue
        # the implicit `$return` http output of an HTTP trigger is how its response comes back
        if kind == HTTP_TRIGGER and binding.get("type") == "http" and binding.get("name") == "$return":
            continue
        raise FunctionHostError(
            f"function '{name}': binding '{binding.get('name')}' of type '{binding.get('type')}' "
            "is not supported by the local host (write through SDK clients instead)"
        )

    params = inspect.signature(user_function).parameters
    trigger_param = str(trigger["name"])
    if trigger_param not in params:
        raise FunctionHostError(
            f"function '{name}': trigger parameter '{trigger_param}' is not in its signature"
        )
    # like the worker: every Python parameter must be bound, or the call would fail every time
    unbound = [p for p in params if p not in (trigger_param, CONTEXT_PARAM)]
    if unbound:
        raise FunctionHostError(
            f"function '{name}': parameter(s) {', '.join(unbound)} are not bound to any binding"
        )
    return IndexedFunction(
        name=name, user_function=user_function, trigger=trigger, wants_context=CONTEXT_PARAM in params
    )


def index_app(app: IndexableApp) -> list[IndexedFunction]:
    """The app's functions, validated. Cached per app object (see the module docstring)."""
    try:
        cached = _CACHE.get(app)
    except TypeError:  # an app that cannot be weakly referenced: index it each time
        cached = None
    if cached is None:
        try:
            cached = _index(app)
        except FunctionHostError as err:
            cached = err
        with contextlib.suppress(TypeError):
            _CACHE[app] = cached
    if isinstance(cached, FunctionHostError):
        raise FunctionHostError(str(cached))  # a fresh error, not one carrying an old traceback
    return cached


def _index(app: IndexableApp) -> list[IndexedFunction]:
    functions = [_index_one(fn) for fn in app.get_functions()]
    names = [f.name.lower() for f in functions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # the real host refuses duplicate names too; its admin API is case-insensitive
        raise FunctionHostError(f"duplicate function name(s): {', '.join(duplicates)}")
    return functions
