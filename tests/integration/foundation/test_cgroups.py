"""The dev broker's memory and disk-read limit (``guardian_dev.cgroups``) on this machine's kernel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from guardian_dev import cgroups
from guardian.errors import SetupError

pytestmark = pytest.mark.integration

V1 = all((cgroups.ROOT / c / "cgroup.procs").exists() and os.access(cgroups.ROOT / c, os.W_OK)
         for c in ("memory", "blkio"))


@pytest.mark.skipif(not V1, reason="needs the cgroup v1 memory and blkio hierarchies mounted and writable "
                                   "(root); this machine has not both")
def test_a_process_is_confined_with_both_limits_and_its_groups_go_with_it(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    name = f"guardian-test-{os.getpid()}"
    try:
        made = cgroups.confine(proc.pid, name, tmp_path, memory_mb=64, disk_read_mb_s=5)
        assert sorted(p.parent.name for p in made) == ["blkio", "memory"]
        mem, blkio = cgroups.ROOT / "memory" / name, cgroups.ROOT / "blkio" / name
        assert str(proc.pid) in (mem / "cgroup.procs").read_text().split()
        assert str(proc.pid) in (blkio / "cgroup.procs").read_text().split()
        assert int((mem / "memory.limit_in_bytes").read_text()) == 64 * 1024 * 1024
        rule = (blkio / "blkio.throttle.read_bps_device").read_text().split()
        assert rule == [cgroups.block_device(tmp_path), str(5 * 1024 * 1024)]
    finally:
        proc.kill()
        proc.wait()
        released = cgroups.release(name)
    assert released
    assert not (cgroups.ROOT / "memory" / name).exists() and not (cgroups.ROOT / "blkio" / name).exists()


def test_a_machine_without_the_hierarchies_gets_a_setup_error_naming_them(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="cgroup v1 'memory' hierarchy"):
        cgroups.confine(os.getpid(), "x", tmp_path, memory_mb=64, root=tmp_path)
