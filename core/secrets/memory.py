"""The in-memory fake of the secrets port, for unit tests and the demo."""

from __future__ import annotations

from core.secrets.port import store_key, validate_secret_name, validate_secret_value


class InMemorySecretStore:
    """A dict behind the `SecretStore` rules (validation, case-insensitive names)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def get(self, name: str) -> str | None:
        return self._values.get(store_key(validate_secret_name(name)))

    async def set(self, name: str, value: str) -> None:
        key = store_key(validate_secret_name(name))
        self._values[key] = validate_secret_value(value)

    async def delete(self, name: str) -> None:
        self._values.pop(store_key(validate_secret_name(name)), None)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        # the count, never the names' values
        return f"InMemorySecretStore({len(self._values)} secrets)"
