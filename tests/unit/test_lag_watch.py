"""A lag is "stalled" when it stays above zero without shrinking for the whole window."""

from __future__ import annotations

from gateway.health import LagWatch


def test_a_lag_that_does_not_shrink_for_the_window_is_stalled() -> None:
    watch = LagWatch(window=30)
    assert not watch.stalled("p", 5, now=0)
    assert not watch.stalled("p", 7, now=20)  # growing, but not for 30 s yet
    assert watch.stalled("p", 7, now=31)


def test_a_shrinking_or_caught_up_lag_is_not() -> None:
    watch = LagWatch(window=30)
    watch.stalled("p", 50, now=0)
    assert not watch.stalled("p", 40, now=31)  # shrank: a new window starts
    assert not watch.stalled("p", 45, now=50)
    assert watch.stalled("p", 45, now=62)
    assert not watch.stalled("p", 0, now=63)  # caught up
    assert not watch.stalled("p", 3, now=64)
    assert not watch.stalled("q", 9, now=64)  # lags are watched apart
