"""Shared fixtures. The local stack is started here, once per test session, and stopped after.

Integration tests need Azurite from `node_modules` (`make test` installs it). If it is missing
they fail rather than skip: a skipped integration suite proves nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as az:
        yield az


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name (letters and digits) for tables and queues of one test."""
    return "t" + uuid.uuid4().hex[:12]
