"""The bounded retry loop with injected sleep and seeded jitter."""

from __future__ import annotations

import random

import pytest

from guardian.escalation.senders import Attempt, RetryPolicy, deliver


def scripted(*attempts: Attempt):
    calls = list(attempts)
    sent: list[Attempt] = []

    def once() -> Attempt:
        a = calls.pop(0)
        sent.append(a)
        return a

    return once, sent


def run(policy, *attempts, stopping=lambda: False, seed=1):
    once, sent = scripted(*attempts)
    slept: list[float] = []
    result = deliver(once, policy, slept.append, random.Random(seed), stopping)
    return result, sent, slept


def test_retries_5xx_and_transport_errors_then_succeeds():
    policy = RetryPolicy(max_attempts=5, base_delay_s=1.0, multiplier=2.0, max_delay_s=30.0)
    result, sent, slept = run(policy, Attempt(503), Attempt(None, error="ConnectError"), Attempt(500), Attempt(200))
    assert result.ok and result.attempts == 4 and len(sent) == 4
    assert slept == result.delays and len(slept) == 3
    for n, d in enumerate(slept, start=1):  # equal jitter: within [cap/2, cap], cap = 1 * 2^(n-1)
        cap = 2.0 ** (n - 1)
        assert cap / 2 <= d <= cap


def test_attempts_are_bounded():
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.1)
    result, sent, slept = run(policy, *[Attempt(502)] * 10)
    assert not result.ok and result.attempts == 3 and len(slept) == 2
    assert result.reason == "HTTP 502"


def test_client_errors_are_not_retried_but_429_and_408_are():
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1)
    result, sent, _ = run(policy, Attempt(400), Attempt(200))
    assert not result.ok and len(sent) == 1
    result, sent, _ = run(policy, Attempt(429), Attempt(408), Attempt(204))
    assert result.ok and len(sent) == 3


def test_retry_after_is_honoured_up_to_the_cap():
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=5.0)
    _, _, slept = run(policy, Attempt(429, retry_after_s=3.0), Attempt(503, retry_after_s=3600.0), Attempt(200))
    assert slept[0] == 3.0 and slept[1] == 5.0


def test_delays_never_exceed_the_cap():
    policy = RetryPolicy(max_attempts=12, base_delay_s=1.0, multiplier=3.0, max_delay_s=10.0)
    _, _, slept = run(policy, *[Attempt(500)] * 12)
    assert max(slept) <= 10.0 and min(slept[4:]) >= 5.0


def test_jitter_is_reproducible_with_a_seed_and_differs_across_seeds():
    policy = RetryPolicy(max_attempts=6, base_delay_s=1.0)
    a = run(policy, *[Attempt(500)] * 6, seed=7)[2]
    b = run(policy, *[Attempt(500)] * 6, seed=7)[2]
    c = run(policy, *[Attempt(500)] * 6, seed=8)[2]
    assert a == b and a != c


def test_stopping_cuts_retries_short():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1)
    flags = iter([False, True])
    result, sent, _ = run(policy, *[Attempt(500)] * 10, stopping=lambda: next(flags, True))
    assert not result.ok and len(sent) <= 2


@pytest.mark.parametrize("bad", [dict(max_attempts=0), dict(base_delay_s=-1), dict(multiplier=0.5)])
def test_invalid_policies_are_refused(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)
