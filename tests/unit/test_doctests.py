"""Every docstring example in the packages runs, as part of `make test` (and `make test-unit`).

Modules are found by their text (a ``>>> `` line), so a new example is picked up without a list
to keep, and only modules with examples are imported: none of them needs a service at import.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("guardian", "guardian_dev")


def modules_with_examples() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ">>> " in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


MODULES = modules_with_examples()


def test_examples_are_found() -> None:
    assert {"guardian.actuators.quota", "guardian.detectors.fast", "guardian.testing"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, report=True)
    assert result.attempted > 0, f"{name} mentions '>>> ' but doctest found no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
