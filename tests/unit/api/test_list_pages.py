"""The quarantine list's pages: every visible quarantine once, newest first, each request bounded.

Run on the testing kit's ledger, whose ``newest`` is held to the Redis ledger's by
tests/unit/engine/ledger_behaviours.py; the API over Redis is tested in tests/integration/api.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from guardian.api.auth import Identity, Role
from guardian.api.service import ReviewService
from guardian.model.quarantine import QState
from guardian.testing import MemoryLedger
from tests.unit.engine.ledger_behaviours import quarantine

NOW = 1_700_000_000.0
SRE = Identity("s", Role.SRE)
TENANT_A = Identity("t", Role.TENANT, ("User:tenant-a",), "team-a")


class CountingLedger(MemoryLedger):
    """Counts the quarantines a request reads from the history."""

    read = 0

    def newest(self, after: Any = None, batch: int = 200) -> Any:
        for q in super().newest(after, batch):
            self.read += 1
            yield q


def history(n: int = 40) -> CountingLedger:
    ledger = CountingLedger(clock=lambda: NOW)
    for i in range(n):   # three tenants; pairs created in the same second; a quarter of them released
        ledger.create_quarantine(quarantine(f"q-{i:03d}", f"c{i}", NOW + i // 2,
                                            state=QState.RELEASED if i % 4 == 0 else QState.ACTIVE,
                                            tenant=("tenant-a", "tenant-b", "tenant-c")[i % 3]))
    return ledger


def all_pages(service: ReviewService, who: Identity, limit: int, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page, cursor = service.list_quarantines(who, cursor=cursor, limit=limit, **filters)
        pages.append([q.id for q in page])
        if cursor is None:
            return pages


@pytest.mark.parametrize("who,filters", [
    (SRE, {}),
    (SRE, {"states": [QState.RELEASED]}),
    (SRE, {"principal": "User:tenant-b"}),
    (TENANT_A, {}),
    (TENANT_A, {"states": [QState.ACTIVE]}),
])
@pytest.mark.parametrize("limit,scan_limit", [(4, 5000), (4, 7), (1, 3), (50, 5000)])
def test_pages_hold_every_visible_quarantine_once_newest_first(who, filters, limit, scan_limit):
    ledger = history()
    service = ReviewService(engine=SimpleNamespace(ledger=ledger, clock=lambda: NOW), scan_limit=scan_limit)
    everything = list(ledger.newest())
    states = set(filters.get("states") or QState)
    expected = [q.id for q in everything
                if q.state in states
                and (who is SRE or q.workload["principal"] in who.principals)
                and filters.get("principal", q.workload["principal"]) == q.workload["principal"]]
    assert expected, "the test needs quarantines to list"
    pages = all_pages(service, who, limit, **filters)
    assert [i for page in pages for i in page] == expected
    assert all(len(page) <= limit for page in pages)
    assert all(len(page) == limit for page in pages[:-1]) or scan_limit < len(everything)


def test_a_request_reads_one_page_not_the_history_and_at_most_scan_limit():
    ledger = history(400)
    service = ReviewService(engine=SimpleNamespace(ledger=ledger, clock=lambda: NOW), scan_limit=50)
    ledger.read = 0
    page, cursor = service.list_quarantines(SRE, limit=10)
    assert len(page) == 10 and cursor is not None
    assert ledger.read == 11   # the page and the one that says there is more
    ledger.read = 0
    page, cursor = service.list_quarantines(SRE, limit=10, cursor=cursor)
    assert ledger.read == 11 and page[0].id == "q-389"
    # tenant-a holds every third quarantine: a filter that matches little still reads at most scan_limit,
    # and the short page's cursor goes on from the last quarantine looked at
    ledger.read = 0
    page, cursor = service.list_quarantines(SRE, principal="User:tenant-a", limit=100)
    assert ledger.read == 51 and cursor is not None
    assert [q.id for q in page] == [f"q-{i:03d}" for i in range(399, 349, -1) if i % 3 == 0]
