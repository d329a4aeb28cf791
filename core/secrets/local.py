"""The secrets port on the local disk, for the local stack where there is no Key Vault.

One file per secret, named by the case-folded secret name (names are [0-9a-z-] after folding,
so they are safe file names and cannot traverse), holding the value's UTF-8 bytes exactly -
no newline added or stripped. The directory is created 0700 and files are written 0600, by
writing a temporary file in the same directory and renaming it over the old one (`os.replace`),
so a reader sees the old value or the new one, never half of one, even if we crash mid-write.

The file I/O runs in a worker thread (`asyncio.to_thread`). The files are tiny, but `fsync`
(which the atomic write needs to survive a crash) can take milliseconds - much longer on a
Docker bind mount or a network home directory - and this store shares the event loop with the
HTTP triggers; the thread hop costs tens of microseconds, which is nothing next to that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
from pathlib import Path

from core.errors import SecretStoreError
from core.secrets.port import store_key, validate_secret_name, validate_secret_value


class LocalSecretStore:
    """Secrets as files in `directory` (Settings.local_secrets_dir)."""

    def __init__(self, directory: Path | str) -> None:
        self._dir = Path(directory)

    async def get(self, name: str) -> str | None:
        name = validate_secret_name(name)
        return await asyncio.to_thread(self._read, name)

    async def set(self, name: str, value: str) -> None:
        name = validate_secret_name(name)
        value = validate_secret_value(value)
        await asyncio.to_thread(self._write, name, value)

    async def delete(self, name: str) -> None:
        name = validate_secret_name(name)
        await asyncio.to_thread(self._remove, name)

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"LocalSecretStore({str(self._dir)!r})"

    # -- in the worker thread ----------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self._dir / store_key(name)

    def _check_dir(self, create: bool) -> bool:
        """True if the directory exists (after creating it when `create`). Refuses a directory
        other users can read: secrets there would not be private, and silently tightening the
        mode of a directory someone pointed us at could break whatever else lives there."""
        try:
            if create:
                self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self._dir.stat().st_mode
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise SecretStoreError(f"secrets directory {self._dir} is not usable: {exc.strerror}") from None
        if not stat.S_ISDIR(mode):
            raise SecretStoreError(f"secrets directory {self._dir} is not a directory")
        if mode & 0o077:
            raise SecretStoreError(
                f"secrets directory {self._dir} is accessible by other users (mode {stat.S_IMODE(mode):o}); "
                f"run `chmod 700 {self._dir}` or point LOCAL_SECRETS_DIR at a private directory"
            )
        return True

    def _read(self, name: str) -> str | None:
        if not self._check_dir(create=False):
            return None
        path = self._path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SecretStoreError(f"could not read secret '{name}' from {path}: {exc.strerror}") from None
        text = _decode(data)
        if text is None:
            raise SecretStoreError(f"secret file {path} for '{name}' is not UTF-8 text")
        return text

    def _write(self, name: str, value: str) -> None:
        self._check_dir(create=True)
        path = self._path(name)
        error: str | None = None
        # mkstemp creates the file 0600 whatever the umask; the leading dot keeps temp files out
        # of the secret namespace (a secret name never starts with '.').
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self._dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(value.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            error = exc.strerror or type(exc).__name__
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if error is not None:
            raise SecretStoreError(f"could not write secret '{name}' to {path}: {error}")

    def _remove(self, name: str) -> None:
        if not self._check_dir(create=False):
            return
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SecretStoreError(f"could not delete secret '{name}' at {path}: {exc.strerror}") from None


def _decode(data: bytes) -> str | None:
    # Returns None rather than raising: a UnicodeDecodeError carries the whole file (the value).
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
