"""The layering in .importlinter holds: detectors and decision logic stay pure, data flows one way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


LINT = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


@pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_import_contracts_are_kept() -> None:
    exe = LINT
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout
    assert proc.stdout.count("KEPT") >= 3
