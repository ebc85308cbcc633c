"""ReplayClock: stepped, running at a speed, paused - on an injected wall clock."""

from __future__ import annotations

import pytest

from serving.exchange.clock import ReplayClock

T0 = 1_741_000_000_000
BAR = 300_000


class Wall:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_stepped_clock_moves_only_when_told_and_only_forward():
    wall = Wall()
    clock = ReplayClock(T0, BAR, wall=wall)
    wall.t += 3600
    assert clock.now_ms() == T0 and clock.speed is None
    assert clock.step(3) == T0 + 3 * BAR
    clock.advance_to(T0 + 3 * BAR + 10)
    assert clock.now_ms() == T0 + 3 * BAR + 10
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance_to(T0)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.step(-1)


def test_a_running_clock_flows_at_its_speed_and_can_be_stepped():
    wall = Wall()
    clock = ReplayClock(T0, BAR, speed=60, wall=wall)
    wall.t += 2.5
    assert clock.now_ms() == T0 + 150_000  # 2.5 s x 60
    clock.step()
    assert clock.now_ms() == T0 + 150_000 + BAR
    wall.t += 1
    assert clock.now_ms() == T0 + 210_000 + BAR
    clock.set_speed(None)
    wall.t += 100
    assert clock.now_ms() == T0 + 210_000 + BAR


def test_pause_freezes_the_flow_until_resume_or_for_a_while():
    wall = Wall()
    clock = ReplayClock(T0, BAR, speed=10, wall=wall)
    wall.t += 1
    clock.pause()
    wall.t += 50
    assert clock.paused and clock.now_ms() == T0 + 10_000
    clock.resume()
    wall.t += 1
    assert not clock.paused and clock.now_ms() == T0 + 20_000

    clock.pause(seconds=2)
    wall.t += 1.5
    assert clock.now_ms() == T0 + 20_000
    wall.t += 1.5  # the pause ended 1 s ago: one second of flow since
    assert not clock.paused and clock.now_ms() == T0 + 30_000
    clock.pause()
    clock.step(2)  # an explicit move still works while paused
    assert clock.now_ms() == T0 + 30_000 + 2 * BAR


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="speed"):
        ReplayClock(T0, BAR, speed=0)
    with pytest.raises(ValueError, match="bar_ms"):
        ReplayClock(T0, 0)
