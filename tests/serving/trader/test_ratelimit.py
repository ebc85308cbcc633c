"""The rate-limit pause: the wait the exchange names, else an exponential backoff, capped."""

from __future__ import annotations

import pytest

from serving.trader.ratelimit import RateLimitPause, retry_after_s


def test_the_wait_comes_from_the_exchanges_headers():
    assert retry_after_s({"Retry-After": "1"}) == 1.0
    # Phemex names one per rate-limit group; the longest one applies
    headers = {"x-ratelimit-retry-after-CONTRACT": "7", "X-RateLimit-Retry-After": "3"}
    assert retry_after_s(headers) == 7.0
    assert retry_after_s({"Content-Type": "application/json"}) is None
    assert retry_after_s(None) is None
    # an HTTP date or garbage is not a number of seconds: the backoff applies instead
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None
    assert retry_after_s({"Retry-After": "-5"}) is None


def test_pause_doubles_without_a_named_wait_and_is_capped():
    pause = RateLimitPause(initial_s=0.5, maximum_s=3.0)
    assert [pause.hit(None) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert 2.9 < pause.remaining() <= 3.0
    pause.ok()
    assert pause.hit(None) == 0.5  # a call went through: from the start again
    assert pause.hit(120.0) == 3.0  # a named wait is honoured up to the cap
    assert pause.hit(1.5) == 1.5


def test_pause_settings_are_checked():
    with pytest.raises(ValueError, match="initial_s"):
        RateLimitPause(initial_s=2.0, maximum_s=1.0)
