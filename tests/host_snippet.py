"""The README's webhook verification snippet, loaded from the one file it is copied from
(`docs/webhook_verification.py`), so tests run exactly the code hosts are told to use."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPET_PATH = ROOT / "docs" / "webhook_verification.py"

Verifier = Callable[..., bool]


def snippet_code() -> str:
    return SNIPPET_PATH.read_text(encoding="utf-8")


def load_verifier() -> Verifier:
    """`verify_m365bridge_signature` as defined by executing the snippet on its own."""
    namespace: dict[str, object] = {"__name__": "host_snippet"}
    exec(compile(snippet_code(), str(SNIPPET_PATH), "exec"), namespace)  # noqa: S102 - our own file
    verifier = namespace["verify_m365bridge_signature"]
    assert callable(verifier)
    return verifier


def readme_python_blocks(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL)]
