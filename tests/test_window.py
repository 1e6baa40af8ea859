"""The window rules, checked with made-up times (no clock, no sleeping)."""

from __future__ import annotations

from dataclasses import dataclass

from stratabatch.window import WindowScheduler, select


def test_three_requests_close_as_one_batch_when_the_window_ends():
    s = WindowScheduler(window_ms=50, max_size=32, min_size=1, max_wait_ms=100)
    s.open(0.000)  # request 1 opens the window
    arrivals = [0.000, 0.010, 0.025]
    for now, n in [(0.010, 2), (0.025, 3), (0.049, 3)]:
        assert not s.due(now, n, arrivals[0])
    assert s.next_check(0.025, 3, arrivals[0]) == 0.050
    assert s.due(0.050, 3, arrivals[0])


def test_max_size_closes_the_window_at_once():
    s = WindowScheduler(window_ms=50, max_size=4, min_size=1, max_wait_ms=100)
    s.open(0.0)
    assert not s.due(0.001, 3, 0.0)
    assert s.due(0.001, 4, 0.0)


def test_min_size_waits_until_max_wait_and_no_longer():
    s = WindowScheduler(window_ms=50, max_size=32, min_size=2, max_wait_ms=100)
    s.open(0.0)
    assert not s.due(0.050, 1, 0.0)  # window over, short of min_size: stays open
    assert s.next_check(0.050, 1, 0.0) == 0.100
    assert not s.due(0.099, 1, 0.0)
    assert s.due(0.100, 1, 0.0)  # the oldest reached max_wait_ms
    assert s.due(0.060, 2, 0.0)  # or min_size arrived


def test_a_window_longer_than_max_wait_is_cut_to_max_wait():
    s = WindowScheduler(window_ms=500, max_size=32, min_size=1, max_wait_ms=100)
    s.open(1.0)
    assert s.window_end == 1.1
    assert s.next_check(1.0, 1, 1.0) == 1.1


@dataclass
class G:
    priority: int
    first_arrival: float
    seq: int


def test_select_without_priorities_is_fifo():
    groups = [G(p, t, i) for i, (p, t) in enumerate([(0, 0.0), (9, 0.1), (5, 0.2)])]
    assert select(groups, 2, 0.3, 1.0, priorities=False) == groups[:2]


def test_select_with_priorities_takes_highest_first_fifo_within():
    groups = [G(p, 0.01 * i, i) for i, p in enumerate([1, 5, 5, 9, 1])]
    got = select(groups, 3, 0.05, 1.0, priorities=True)
    assert [g.seq for g in got] == [3, 1, 2]


def test_starved_requests_go_first_whatever_their_priority():
    groups = [G(0, 0.0, 0), G(10, 0.5, 1), G(10, 0.6, 2)]
    got = select(groups, 2, now=0.7, max_wait_s=0.3, priorities=True)
    # group 0 waited 700 ms > max_wait 300 ms; groups 1 and 2 waited 200 and 100 ms
    assert [g.seq for g in got] == [0, 1]


def test_a_group_due_by_max_wait_is_starved_for_select_at_that_very_instant():
    # The starvation timer fires at first_arrival + max_wait_s, and due() says a batch is due
    # then; select() must agree that this group has waited max_wait_s, whatever the rounding
    # (0.9 + 0.3 - 0.3 < 0.9 in floats: "now - max_wait_s" would call it not yet starved and
    # let a newer group of higher priority go first).
    s = WindowScheduler(window_ms=1000.0, max_size=8, min_size=1, max_wait_ms=300.0)
    s.open(0.9)
    now = s.next_check(0.9, 2, 0.9)
    assert now == 0.9 + 0.3 and s.due(now, 2, 0.9)
    groups = [G(0, 0.9, 0), G(10, 1.0, 1)]
    got = select(groups, 1, now=now, max_wait_s=0.3, priorities=True)
    assert [g.seq for g in got] == [0]
