"""The drill notices a guardian process that died under it, and says how."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardian.errors import SetupError
from guardian_dev.drill.runner import GuardianProc


def _proc(tmp_path: Path, code: str, extra_worker: bool = False) -> GuardianProc:
    g = GuardianProc(env={}, log_path=tmp_path / "guardian.log", api_url="", metrics_url="", prefix="p:",
                     detections_topic="t", extra_worker=extra_worker)
    g.proc = subprocess.Popen([sys.executable, "-c", code])
    g.proc.wait(30)
    return g


def test_a_guardian_killed_by_a_signal_is_named_with_the_signal_and_its_log(tmp_path: Path) -> None:
    g = _proc(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(SetupError, match=r"guardian run --api exited with -11 \(SIGSEGV\) during the run; see .*guardian.log"):
        g.check_alive()


def test_a_worker_that_exited_is_named_and_one_being_stopped_is_not_an_error(tmp_path: Path) -> None:
    g = _proc(tmp_path, "raise SystemExit(3)", extra_worker=True)
    with pytest.raises(SetupError, match=r"guardian worker exited with 3 during the run"):
        g.check_alive()
    g._stopping = True   # the drill asked it to stop: its exit is expected
    g.check_alive()


def test_a_running_guardian_passes(tmp_path: Path) -> None:
    g = GuardianProc(env={}, log_path=tmp_path / "guardian.log", api_url="", metrics_url="", prefix="p:",
                     detections_topic="t")
    g.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        g.check_alive()
    finally:
        g.proc.kill()
        g.proc.wait()
