"""A memory and disk-read limit for one process (Linux cgroup v1), for a broker of stated capacity.

A drill broker with little page cache and a slow disk (``BrokerCapacity.memory_mb`` and
``disk_read_mb_s``) reads old log segments from the disk, as a busy cluster does when a consumer
rewinds past what its page cache holds: Kafka's network thread blocks in ``sendfile`` while the
pages come in (KAFKA-7504), and every client served by that thread waits. On a development machine
with gigabytes of page cache and a fast disk a rewinding consumer reads from memory and hurts no one.

Needs the cgroup v1 ``memory`` and ``blkio`` hierarchies mounted and writable (root); anything else is
a ``SetupError`` saying so. One group per process, named by the caller, under both hierarchies.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from guardian.errors import SetupError

ROOT = Path("/sys/fs/cgroup")


def block_device(path: Path) -> str:
    """``major:minor`` of the whole disk holding ``path`` (blkio throttles whole disks, not partitions)."""
    st = os.stat(path)
    dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    if not dev.exists():
        raise SetupError(f"{path} is not on a block device ({os.major(st.st_dev)}:{os.minor(st.st_dev)}: an "
                         "overlay or tmpfs?): a disk-read limit needs the data directory on a disk")
    if (dev / "partition").exists():
        dev = dev.resolve().parent   # the partition's disk
    return (dev / "dev").read_text().strip()


def _controller(name: str, root: Path) -> Path:
    path = root / name
    if not (path / "cgroup.procs").exists():
        raise SetupError(f"a broker memory or disk-read limit needs the cgroup v1 '{name}' hierarchy at {path}; "
                         "this machine does not mount it (cgroup v2 only, or a container without it)")
    if not os.access(path, os.W_OK):
        raise SetupError(f"{path} is not writable: a broker memory or disk-read limit needs root")
    return path


def confine(pid: int, name: str, data_dir: Path, memory_mb: int = 0, disk_read_mb_s: float = 0.0,
            root: Path = ROOT) -> list[Path]:
    """Put ``pid`` (all its threads) in group ``name`` with the given limits (0: none); returns the groups made.

    The memory limit counts the process's own memory and the page cache it fills (its writes and
    reads); the disk-read limit applies to reads of the disk holding ``data_dir`` that miss the cache.
    """
    made: list[Path] = []
    limits: list[tuple[str, str, str]] = []
    if memory_mb:
        limits.append(("memory", "memory.limit_in_bytes", str(int(memory_mb) * 1024 * 1024)))
    if disk_read_mb_s:
        limits.append(("blkio", "blkio.throttle.read_bps_device",
                       f"{block_device(data_dir)} {int(disk_read_mb_s * 1024 * 1024)}"))
    try:
        for controller, knob, value in limits:
            group = _controller(controller, root) / name
            group.mkdir(exist_ok=True)
            made.append(group)
            (group / knob).write_text(value)
            (group / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        raise SetupError(f"could not confine pid {pid} in cgroup {name}: {exc}") from exc
    return made


def release(name: str, root: Path = ROOT, wait_s: float = 5.0) -> bool:
    """Remove group ``name`` from both hierarchies (missing groups are fine); True when none is left.

    A process that just exited can keep its group busy for a moment, so this waits up to ``wait_s``;
    a group still busy then (a process left in it) stays, and costs nothing while empty.
    """
    deadline = time.monotonic() + wait_s
    left = [root / c / name for c in ("memory", "blkio")]
    while True:
        for group in list(left):
            try:
                group.rmdir()
                left.remove(group)
            except FileNotFoundError:
                left.remove(group)
            except OSError:
                pass   # still busy
        if not left or time.monotonic() >= deadline:
            return not left
        time.sleep(0.1)
