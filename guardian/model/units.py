"""Numbers as a person reads them. Pure."""

from __future__ import annotations


def bytes_rate(x: float) -> str:
    """``786432.0`` -> ``768 KiB/s``: a byte rate as a person reads it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= scale:
            return f"{x / scale:#.3g}".rstrip(".") + f" {unit}/s"
    return f"{x:#.3g}".rstrip(".") + " B/s"
