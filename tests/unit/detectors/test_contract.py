"""One contract suite run against every detector in the package; the checks are the testing kit's
(``guardian.testing.check_detector_*``), so a new detector's own tests can run them too."""

from __future__ import annotations

from typing import Callable

import pytest

from guardian.detectors.base import Detector
from guardian.detectors.fast import FastTierDetector, TierParams
from guardian.testing import DETECTOR_CHECKS

FACTORIES: dict[str, Callable[[int], Detector]] = {
    "fast_tier": lambda seed: FastTierDetector(TierParams(min_excess=5.0), seed=seed),
}


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> Callable[[int], Detector]:
    return FACTORIES[request.param]


@pytest.mark.parametrize("check", DETECTOR_CHECKS, ids=lambda c: c.__name__.removeprefix("check_detector_"))
def test_detector_contract(factory, check) -> None:
    check(factory)
