"""A broker with the guardian plugin loaded (its own, beside the session's plain broker)."""

from __future__ import annotations

from typing import Iterator

import pytest

from guardian_dev.stack import DevStack, Endpoints
from guardian.settings import DevSettings


# A small record limit, so that every plugin test reads snapshots split into several records, as a broker
# with thousands of clients writes them (each record a complete snapshot; docs/broker-plugin.md, "Records")
MAX_RECORD_BYTES = 16384


@pytest.fixture(scope="session")
def plugin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    stack = DevStack(DevSettings(tenants=["tenant-a", "tenant-b"]), run_dir=tmp_path_factory.mktemp("plugin-stack"),
                     use_environment=False, broker_plugin=True,
                     kafka_properties={"guardian.plugin.max.record.bytes": str(MAX_RECORD_BYTES)})
    ep = stack.up(progress=lambda m: print(f"[plugin-stack] {m}"))
    yield ep
    stack.down(progress=lambda m: print(f"[plugin-stack] {m}"), purge=True)
