"""m365-bridge core: the logic of the bridge, free of any Azure Functions import."""

from __future__ import annotations

__version__ = "0.1.0"
