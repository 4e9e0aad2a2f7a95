"""Sync tokens, stream position allocation and the notifier's no-lost-wakeup rule."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task

from homeserver.http.errors import InvalidParamError
from homeserver.notifier import Notifier
from homeserver.streams import STREAM_NAMES, StreamIdGenerator, StreamToken

positions = st.integers(min_value=0, max_value=2**53 - 1)


@given(st.lists(positions, min_size=len(STREAM_NAMES), max_size=len(STREAM_NAMES)))
def test_token_round_trip(values: list[int]) -> None:
    token = StreamToken(*values)
    assert StreamToken.parse(token.to_string()) == token


def test_short_token_reads_missing_positions_as_zero() -> None:
    assert StreamToken.parse("s5_2") == StreamToken(events=5, receipts=2)


@pytest.mark.parametrize("bad", ["", "5_2", "s", "s1_x", "s-1", "s" + "_".join(["1"] * 20), "t1", "s1__2"])
def test_bad_tokens_are_m_invalid_param(bad: str) -> None:
    with pytest.raises(InvalidParamError):
        StreamToken.parse(bad)


def test_token_comparison_is_per_stream() -> None:
    a = StreamToken(events=5, typing=1)
    b = StreamToken(events=4, typing=2)
    assert a.is_after(b) and b.is_after(a)
    assert a.max(b) == StreamToken(events=5, typing=2)
    assert not a.is_after(a)


@given(st.permutations(list(range(1, 11))))
def test_generator_current_never_passes_an_unfinished_position(order: list[int]) -> None:
    gen = StreamIdGenerator(0)
    allocated = [gen.allocate() for _ in range(10)]
    assert allocated == list(range(1, 11))
    done: set[int] = set()
    for pos in order:
        gen.mark_done(pos)
        done.add(pos)
        current = gen.current()
        assert all(p in done for p in range(1, current + 1))
        assert current + 1 not in done or current == 10
    assert gen.current() == 10


def test_notifier_returns_at_once_for_changes_after_the_token() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    notifier.notify("events", 3, rooms=["!r:x"])
    d = defer.ensureDeferred(notifier.wait_for_change("@a:x", ["!r:x"], StreamToken(events=2), 30_000))
    assert d.called and d.result is True


def test_notifier_wakes_waiter_and_times_out() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    since = StreamToken(events=3)
    d = defer.ensureDeferred(notifier.wait_for_change("@a:x", ["!r:x"], since, 30_000))
    assert not d.called
    notifier.notify("events", 4, rooms=["!other:x"])
    assert not d.called
    notifier.notify("typing", 1, rooms=["!r:x"])
    assert not d.called  # woken on the next reactor turn, after the notifying request has answered
    clock.advance(0)
    assert d.called and d.result is True
    d2 = defer.ensureDeferred(notifier.wait_for_change("@b:x", [], StreamToken(events=4), 5_000))
    clock.advance(4.9)
    assert not d2.called
    clock.advance(0.2)
    assert d2.called and d2.result is False
    assert notifier._waiters == {}


def test_cancelled_waiter_is_unregistered() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    d = defer.ensureDeferred(notifier.wait_for_change("@a:x", ["!r:x"], StreamToken(), 30_000))
    d.cancel()
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    assert notifier._waiters == {}
    assert not clock.getDelayedCalls()


@given(st.lists(st.integers(0, 2**40), min_size=len(STREAM_NAMES), max_size=len(STREAM_NAMES)),
       st.sampled_from(STREAM_NAMES), st.integers(0, 2**40))
def test_copy_and_replace_changes_only_that_stream(values: list[int], stream: str, position: int) -> None:
    token = StreamToken(*values)
    replaced = token.copy_and_replace(stream, position)
    for name in STREAM_NAMES:
        assert getattr(replaced, name) == (position if name == stream else getattr(token, name))
    advanced = token.copy_and_advance(stream, position)
    assert getattr(advanced, stream) == max(position, getattr(token, stream))
    assert replaced.to_string() == "s" + "_".join(str(getattr(replaced, n)) for n in STREAM_NAMES)
    assert token.is_at_or_after(token) and not token.is_after(token)
    assert advanced.is_at_or_after(token)
    assert replaced.is_at_or_after(token) == (position >= getattr(token, stream))


def test_notifier_knows_changes_only_from_its_baseline() -> None:
    notifier = Notifier(task.Clock())
    assert not notifier.knows_changes_since(StreamToken(events=5))  # no baseline: never claims to know
    notifier.set_baseline(StreamToken(events=5, typing=100))
    assert notifier.knows_changes_since(StreamToken(events=5, typing=100))
    assert notifier.knows_changes_since(StreamToken(events=9, typing=120))
    # A token from before the start (a restart): changes between it and the start were never announced here.
    assert not notifier.knows_changes_since(StreamToken(events=4, typing=120))
    assert not notifier.knows_changes_since(StreamToken(events=9, typing=99))


@given(st.lists(st.tuples(st.sampled_from(["@a:x", "@b:x", "@c:x"]),
                          st.sets(st.sampled_from(["!r1:x", "!r2:x", "!r3:x"]), max_size=3)),
                min_size=1, max_size=8),
       st.lists(st.one_of(st.tuples(st.just("notify"), st.sampled_from(["@a:x", "@b:x", "@c:x", "!r1:x", "!r2:x",
                                                                          "!r3:x", "!none:x"])),
                          st.tuples(st.just("cancel"), st.integers(0, 7))), max_size=12))
def test_waiters_on_shared_and_single_keys_wake_exactly_when_a_key_changes(
        waits: list[tuple[str, set[str]]], actions: list[tuple[str, Any]]) -> None:
    """Each key holds one waiter or a set of several; whatever the mix, a waiter wakes (True) when one of its keys
    is announced, a cancelled one is unregistered at once, the rest time out (False), and nothing is left."""
    clock = task.Clock()
    notifier = Notifier(clock)
    position = 1
    ds = []
    for user, rooms in waits:
        d = defer.ensureDeferred(notifier.wait_for_change(user, sorted(rooms), StreamToken(events=position), 1_000))
        d.addErrback(lambda f: f.trap(defer.CancelledError) and "cancelled")
        ds.append(d)
    expected: list[Any] = [None] * len(waits)
    for action, arg in actions:
        if action == "notify":
            position += 1
            notifier.notify("events", position, users=[arg] if arg.startswith("@") else [],
                            rooms=[arg] if arg.startswith("!") else [])
            clock.advance(0)
            for i, (user, rooms) in enumerate(waits):
                if expected[i] is None and arg in {user, *rooms}:
                    expected[i] = True
        elif arg < len(ds) and expected[arg] is None:
            ds[arg].cancel()
            expected[arg] = "cancelled"
        for i, d in enumerate(ds):
            assert d.called == (expected[i] is not None), (i, expected)
    clock.advance(1.0)
    results = [d.result for d in ds]
    assert results == [False if e is None else e for e in expected]
    assert notifier._waiters == {} and not clock.getDelayedCalls()


def test_waiting_gauge_follows_every_way_a_wait_ends() -> None:
    from homeserver.notifier import waiting_sync_requests

    def gauge() -> float:
        return waiting_sync_requests._value.get()

    clock = task.Clock()
    notifier = Notifier(clock)
    start = gauge()
    immediate = notifier.wait_for_change("@a:x", [], StreamToken(), 0)
    assert isinstance(immediate, defer.Deferred) and immediate.result is False and gauge() == start
    woken = notifier.wait_for_change("@a:x", ["!r:x"], StreamToken(), 30_000)
    timed_out = notifier.wait_for_change("@b:x", [], StreamToken(), 1_000)
    cancelled = notifier.wait_for_change("@c:x", ["!r:x"], StreamToken(), 30_000)
    assert gauge() == start + 3
    cancelled.addErrback(lambda f: f.trap(defer.CancelledError))
    cancelled.cancel()
    assert gauge() == start + 2
    notifier.notify("events", 1, rooms=["!r:x"])
    clock.advance(0)
    assert woken.result is True and gauge() == start + 1
    clock.advance(1)
    assert timed_out.result is False and gauge() == start
    assert notifier._waiters == {} and not clock.getDelayedCalls()


def test_waits_ending_in_the_same_step_share_one_timer_and_none_ends_early() -> None:
    from homeserver.notifier import TIMEOUT_STEP_MS

    clock = task.Clock()
    clock.advance(1000.037)  # not on a step boundary
    notifier = Notifier(clock)
    started = clock.seconds()
    timeouts = [1000 + 7 * i for i in range(40)]  # 1000 .. 1273 ms: deadlines in four 100 ms steps
    ended: dict[int, float] = {}
    for i, timeout in enumerate(timeouts):
        d = notifier.wait_for_change(f"@u{i}:x", ["!r:x"], StreamToken(), timeout)
        d.addCallback(lambda changed, i=i: ended.setdefault(i, clock.seconds()) and changed)
    assert len(clock.getDelayedCalls()) == 4
    while clock.getDelayedCalls():
        clock.advance(0.001)
    assert sorted(ended) == list(range(len(timeouts)))
    for i, timeout in enumerate(timeouts):
        late_ms = (ended[i] - started) * 1000 - timeout
        assert -0.5 < late_ms <= TIMEOUT_STEP_MS + 1, (timeout, late_ms)
    assert notifier._waiters == {} and notifier._timeouts == {}


def test_a_step_timer_is_cancelled_with_its_last_waiter_and_others_keep_theirs() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    a = notifier.wait_for_change("@a:x", [], StreamToken(), 5_001)
    b = notifier.wait_for_change("@b:x", [], StreamToken(), 5_090)  # same 100 ms step as a (ends at 5.1 s)
    c = notifier.wait_for_change("@c:x", ["!r:x"], StreamToken(), 9_000)
    assert len(clock.getDelayedCalls()) == 2
    for d in (a, c):
        d.addErrback(lambda f: f.trap(defer.CancelledError))
        d.cancel()
    assert len(clock.getDelayedCalls()) == 1  # c's step had only c; a's step still has b
    clock.advance(5.1)
    assert b.result is False and not clock.getDelayedCalls() and notifier._timeouts == {}
