"""The local file store keeps secrets private on disk and never leaves half a file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.errors import SecretStoreError
from core.secrets import LocalSecretStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_given_no_directory_when_a_secret_is_set_then_dir_is_0700_and_file_0600(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "secrets"
    store = LocalSecretStore(directory)
    await store.set("Client-Secret", "value")
    assert _mode(directory) == 0o700
    file = directory / "client-secret"  # case-folded, like Key Vault's case-insensitive names
    assert _mode(file) == 0o600
    assert file.read_bytes() == b"value"


async def test_an_overwrite_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "secrets")
    for i in range(5):
        await store.set("rotating", f"value {i}")
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["rotating"]
    assert await store.get("rotating") == "value 4"


async def test_given_a_directory_others_can_read_then_the_store_refuses_it(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    store = LocalSecretStore(directory)
    with pytest.raises(SecretStoreError, match="chmod 700"):
        await store.set("x", "value")
    with pytest.raises(SecretStoreError, match="accessible by other users"):
        await store.get("x")
    assert _mode(directory) == 0o755  # not silently changed


async def test_given_a_file_that_is_not_utf8_then_the_error_does_not_quote_it(tmp_path: Path) -> None:
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o700)
    (directory / "binary").write_bytes(b"\xffsecret-bytes")
    with pytest.raises(SecretStoreError, match="not UTF-8") as err:
        await LocalSecretStore(directory).get("binary")
    assert "secret-bytes" not in str(err.value)
    assert err.value.__context__ is None


async def test_given_no_directory_then_reads_and_deletes_create_nothing(tmp_path: Path) -> None:
    store = LocalSecretStore(tmp_path / "missing")
    assert await store.get("x") is None
    await store.delete("x")
    assert not (tmp_path / "missing").exists()
