"""The HTTP API (FastAPI, ``/v1``). ``from guardian.api import create_app``; nothing happens at import time."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from guardian.api.app import create_app

        return create_app
    raise AttributeError(name)
