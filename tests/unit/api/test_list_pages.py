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

    def newest(self, after: Any = None, batch: int = 200, principals: Any = None) -> Any:
        for q in super().newest(after, batch, principals):
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
    # a quarter are released: a filter that matches little still reads at most scan_limit, and the
    # short page's cursor goes on from the last quarantine looked at
    ledger.read = 0
    page, cursor = service.list_quarantines(SRE, states=[QState.RELEASED], limit=100)
    assert ledger.read == 51 and cursor is not None
    assert [q.id for q in page] == [f"q-{i:03d}" for i in range(399, 349, -1) if i % 4 == 0]
    ledger.read = 0
    page, _ = service.list_quarantines(SRE, states=[QState.RELEASED], limit=100, cursor=cursor)
    assert page[0].id == "q-348"


@pytest.mark.parametrize("who,principal", [(TENANT_A, None), (SRE, "User:tenant-a"), (TENANT_A, "User:tenant-a")])
def test_one_principals_page_reads_only_that_principals_quarantines(who, principal):
    """tenant-a holds every third quarantine: its page reads its own, not the other tenants' before them."""
    ledger = history(400)
    service = ReviewService(engine=SimpleNamespace(ledger=ledger, clock=lambda: NOW), scan_limit=50)
    ledger.read = 0
    page, cursor = service.list_quarantines(who, principal=principal, limit=10)
    assert ledger.read == 11 and cursor is not None
    assert [q.id for q in page] == [f"q-{i:03d}" for i in range(399, 369, -1) if i % 3 == 0]
    ledger.read = 0
    page, cursor = service.list_quarantines(who, principal=principal, limit=100)
    assert ledger.read == 51 and cursor is not None and len(page) == 50, "scan_limit still bounds a request"


def test_a_tenant_asking_for_another_tenants_principal_gets_an_empty_page():
    ledger = history(400)
    service = ReviewService(engine=SimpleNamespace(ledger=ledger, clock=lambda: NOW), scan_limit=50)
    ledger.read = 0
    assert service.list_quarantines(TENANT_A, principal="User:tenant-b", limit=10) == ([], None)
    assert ledger.read == 0, "the same answer as for a principal without quarantines, and as cheap"


def test_a_tenants_visible_history_is_its_own_newest_not_the_clusters():
    """The appeal list and the annotation feed read ``visible``: a tenant's reaches back past other
    tenants' newer history."""
    ledger = history(400)
    service = ReviewService(engine=SimpleNamespace(ledger=ledger, clock=lambda: NOW), scan_limit=30)
    assert [q.id for q in service.visible(TENANT_A)] == [f"q-{i:03d}" for i in range(399, 309, -1) if i % 3 == 0]
    assert [q.id for q in service.visible(SRE)] == [f"q-{i:03d}" for i in range(399, 369, -1)]
    released = service.visible(TENANT_A, states=[QState.RELEASED])
    assert released and all(q.state is QState.RELEASED and q.workload["principal"] == "User:tenant-a"
                            for q in released)
