"""Dispatch through the app: retries, dead letters, replay, patterns, leases.

Deliveries are posted to the app and the dispatcher is run synchronously
with ``run_until_idle``; retry delays pass by advancing the frozen clock,
never by waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway import Event
from gateway.dispatch import DoNotRetry, backoff_seconds, handler_name
from gateway.replay import replay_dead_letters, replay_event, replay_range
from tests.helpers import deliver

TYPE = "message.delivered"

pytestmark = pytest.mark.usefixtures("isolated_handlers")
JITTER = 0.2


def post(app: Any, event_id: str, event_type: str = TYPE) -> int:
    """Post a signed delivery to the ``integration`` source; return the status."""
    client = app.test_client()
    response = deliver(client, event_id, event_type=event_type, data={"id": "m1"})
    return int(response.status_code)


def pk_of(app: Any, event_id: str) -> int:
    stored = app.extensions["gateway"].store.find_event(event_id)
    assert stored is not None, f"{event_id} was not stored"
    return int(stored.pk)


class Recorder:
    """A handler that records its calls and fails while ``failing`` is set."""

    def __init__(self, failing: bool = False, error: type[Exception] = RuntimeError):
        self.failing = failing
        self.error = error
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, source: str, event: Event) -> None:
        self.calls.append((source, event.id, event.attempt))
        if self.failing:
            raise self.error("the downstream service refused")


def connect_pair(connect: Callable[..., Any]) -> tuple[Recorder, Recorder, str]:
    """Connect one good and one failing handler to ``TYPE``; name the bad one."""
    good, bad = Recorder(), Recorder(failing=True)

    def good_handler(source: str, event: Event) -> None:
        good(source, event)

    def bad_handler(source: str, event: Event) -> None:
        bad(source, event)

    connect(TYPE, good_handler)
    connect(TYPE, bad_handler)
    return good, bad, handler_name(bad_handler)


def next_retry_delay(app: Any, pk: int, handler: str, clock: Any) -> float:
    run = app.extensions["gateway"].store.handler_runs(pk)[handler]
    assert run.status == "retrying"
    return float(run.next_attempt_at - clock.now)


def exhaust_retries(app: Any, pk: int, bad_name: str, clock: Any) -> list[float]:
    """Advance the clock through every retry; return the delays seen."""
    dispatcher = app.extensions["gateway"].dispatcher
    delays: list[float] = []
    for _ in range(10):
        run = app.extensions["gateway"].store.handler_runs(pk)[bad_name]
        if run.status != "retrying":
            break
        delays.append(run.next_attempt_at - clock.now)
        clock.advance(delays[-1])
        dispatcher.run_until_idle()
    return delays


# -- retries and dead letters -----------------------------------------------


def test_failing_handler_is_retried_alone_then_dead_lettered(make_app, connect, clock):
    app = make_app()
    good, bad, bad_name = connect_pair(connect)
    dispatcher = app.extensions["gateway"].dispatcher
    assert post(app, "evt_1") == 202
    dispatcher.run_until_idle()
    pk = pk_of(app, "evt_1")

    delays = exhaust_retries(app, pk, bad_name, clock)

    assert len(good.calls) == 1
    assert [attempt for _, _, attempt in bad.calls] == [1, 2, 3, 4]
    assert len(delays) == 3
    for delay, nominal in zip(delays, (2, 4, 8), strict=True):
        assert nominal * (1 - JITTER) <= delay <= nominal * (1 + JITTER)
    (letter,) = app.extensions["gateway"].store.dead_letters()
    assert (letter.event_id, letter.handler, letter.attempts) == (
        "evt_1",
        bad_name,
        4,
    )
    assert letter.last_error == "RuntimeError: the downstream service refused"
    assert app.extensions["gateway"].store.get_event(pk).status == "dead"


def test_retry_waits_for_its_backoff(make_app, connect, clock):
    app = make_app()
    _, bad, bad_name = connect_pair(connect)
    dispatcher = app.extensions["gateway"].dispatcher
    post(app, "evt_1")
    dispatcher.run_until_idle()
    delay = next_retry_delay(app, pk_of(app, "evt_1"), bad_name, clock)
    clock.advance(delay - 0.1)
    dispatcher.run_until_idle()
    assert len(bad.calls) == 1
    clock.advance(0.1)
    dispatcher.run_until_idle()
    assert len(bad.calls) == 2


def test_handler_sees_event_id_and_attempt_number(make_app, connect, clock):
    app = make_app()
    _, bad, bad_name = connect_pair(connect)
    post(app, "evt_7")
    app.extensions["gateway"].dispatcher.run_until_idle()
    exhaust_retries(app, pk_of(app, "evt_7"), bad_name, clock)
    assert bad.calls == [("integration", "evt_7", n) for n in (1, 2, 3, 4)]


def test_do_not_retry_dead_letters_at_once(make_app, connect):
    app = make_app()
    refusing = Recorder(failing=True, error=DoNotRetry)
    connect(TYPE, refusing)
    post(app, "evt_1")
    app.extensions["gateway"].dispatcher.run_until_idle()
    (letter,) = app.extensions["gateway"].store.dead_letters()
    assert letter.attempts == 1
    assert letter.last_error.startswith("DoNotRetry:")
    assert len(refusing.calls) == 1


def test_retry_settings_come_from_the_environment(make_app, connect, clock):
    app = make_app(GATEWAY_MAX_RETRIES="1", GATEWAY_RETRY_BASE_SECONDS="10")
    _, bad, bad_name = connect_pair(connect)
    post(app, "evt_1")
    app.extensions["gateway"].dispatcher.run_until_idle()
    delays = exhaust_retries(app, pk_of(app, "evt_1"), bad_name, clock)
    assert len(delays) == 1
    assert 10 * (1 - JITTER) <= delays[0] <= 10 * (1 + JITTER)
    assert len(bad.calls) == 2
    assert app.extensions["gateway"].store.dead_letters()[0].attempts == 2


def test_backoff_doubles_from_its_base_within_the_jitter():
    for attempt, nominal in ((1, 3.0), (2, 6.0), (3, 12.0)):
        delay = backoff_seconds(attempt, 3.0)
        assert nominal * (1 - JITTER) <= delay <= nominal * (1 + JITTER)
    assert backoff_seconds(4, 1.0, jitter=0) == 8.0


# -- replay -----------------------------------------------------------------


def test_replay_after_a_fix_runs_only_the_failed_handler(make_app, connect, clock):
    app = make_app()
    good, bad, bad_name = connect_pair(connect)
    store = app.extensions["gateway"].store
    dispatcher = app.extensions["gateway"].dispatcher
    post(app, "evt_1")
    dispatcher.run_until_idle()
    exhaust_retries(app, pk_of(app, "evt_1"), bad_name, clock)
    bad.failing = False
    bad.calls.clear()

    assert replay_dead_letters(store, now=clock.now) == 1
    dispatcher.run_until_idle()

    assert bad.calls == [("integration", "evt_1", 1)]
    assert len(good.calls) == 1
    assert store.dead_letters() == []
    assert store.get_event(pk_of(app, "evt_1")).status == "done"


def test_replay_of_one_event_keeps_succeeded_handlers_unless_asked(
    make_app, connect, clock
):
    app = make_app()
    first, second = Recorder(), Recorder()

    def first_handler(source: str, event: Event) -> None:
        first(source, event)

    def second_handler(source: str, event: Event) -> None:
        second(source, event)

    connect(TYPE, first_handler)
    connect("message.*", second_handler)
    store = app.extensions["gateway"].store
    dispatcher = app.extensions["gateway"].dispatcher
    post(app, "evt_1")
    dispatcher.run_until_idle()
    pk = pk_of(app, "evt_1")

    assert replay_event(store, pk, now=clock.now) == 1
    dispatcher.run_until_idle()
    assert (len(first.calls), len(second.calls)) == (1, 1)

    replay_event(store, pk, include_succeeded=True, now=clock.now)
    dispatcher.run_until_idle()
    assert (len(first.calls), len(second.calls)) == (2, 2)

    replay_event(
        store,
        pk,
        handlers=[handler_name(second_handler)],
        include_succeeded=True,
        now=clock.now,
    )
    dispatcher.run_until_idle()
    assert (len(first.calls), len(second.calls)) == (2, 3)


def test_replay_range_queues_only_events_received_in_the_range(
    make_app, connect, clock
):
    app = make_app()
    handler = Recorder()
    connect(TYPE, handler)
    dispatcher = app.extensions["gateway"].dispatcher
    for event_id in ("evt_before", "evt_inside", "evt_after"):
        post(app, event_id)
        clock.advance(60)
    dispatcher.run_until_idle()
    handler.calls.clear()
    start = clock.now - 3 * 60

    queued = replay_range(
        app.extensions["gateway"].store,
        since=start + 30,
        until=start + 90,
        include_succeeded=True,
        now=clock.now,
    )
    dispatcher.run_until_idle()

    assert queued == 1
    assert handler.calls == [("integration", "evt_inside", 1)]


def test_replay_of_an_unknown_event_queues_nothing(make_app):
    app = make_app()
    assert replay_event(app.extensions["gateway"].store, 99999) == 0


# -- patterns ---------------------------------------------------------------


def test_patterns_match_exact_prefix_star_and_source(make_app, connect):
    app = make_app()
    exact, prefix, star = Recorder(), Recorder(), Recorder()
    other_type, other_source, same_source = Recorder(), Recorder(), Recorder()
    connect(TYPE, exact)
    connect("message.*", prefix)
    connect("*", star)
    connect("message.read", other_type)
    connect("*", other_source, source="github")
    connect("message.*", same_source, source="integration")
    post(app, "evt_1")
    app.extensions["gateway"].dispatcher.run_until_idle()
    called = [len(r.calls) for r in (exact, prefix, star, same_source)]
    assert called == [1, 1, 1, 1]
    assert other_type.calls == []
    assert other_source.calls == []


def test_two_handler_objects_of_one_class_both_run(make_app, connect):
    app = make_app()
    first, second = Recorder(), Recorder()
    connect(TYPE, first)
    connect(TYPE, second)
    post(app, "evt_1")
    app.extensions["gateway"].dispatcher.run_until_idle()
    assert (len(first.calls), len(second.calls)) == (1, 1)
    runs = app.extensions["gateway"].store.handler_runs(pk_of(app, "evt_1"))
    assert len(runs) == 2


def test_event_without_handlers_is_logged_and_marked_done(make_app, caplog):
    app = make_app()
    post(app, "evt_lonely", event_type="nobody.listens")
    with caplog.at_level(logging.WARNING, logger="gateway.dispatch"):
        handled = app.extensions["gateway"].dispatcher.run_until_idle()
    assert handled == 1
    assert any(r.getMessage() == "no handler for event" for r in caplog.records)
    assert app.extensions["gateway"].store.get_event(
        pk_of(app, "evt_lonely")
    ).status == ("done")


def test_repeat_delivery_is_dispatched_once(make_app, connect):
    app = make_app()
    handler = Recorder()
    connect(TYPE, handler)
    assert [post(app, "evt_1"), post(app, "evt_1")] == [202, 200]
    app.extensions["gateway"].dispatcher.run_until_idle()
    assert len(handler.calls) == 1


# -- leases, crashes and shutdown -------------------------------------------


def test_event_left_by_a_dead_worker_is_dispatched_after_its_lease(
    make_app, connect, clock
):
    app = make_app(GATEWAY_LEASE_SECONDS="30")
    handler = Recorder()
    connect(TYPE, handler)
    store = app.extensions["gateway"].store
    post(app, "evt_1")
    assert store.claim_due("killed-worker", now=clock.now, lease_seconds=30)
    dispatcher = app.extensions["gateway"].dispatcher

    assert dispatcher.run_until_idle() == 0
    clock.advance(31)
    assert dispatcher.run_until_idle() == 1
    assert handler.calls == [("integration", "evt_1", 1)]


def test_worker_that_lost_its_lease_leaves_the_rest_to_the_new_owner(
    make_app, connect, clock, caplog
):
    app = make_app(GATEWAY_LEASE_SECONDS="10")
    store = app.extensions["gateway"].store
    later = Recorder()

    def slow_first(source: str, event: Event) -> None:
        clock.advance(11)
        assert store.claim_due("other-worker", now=clock.now, lease_seconds=10)

    connect(TYPE, slow_first)
    connect("message.*", later)
    post(app, "evt_1")
    with caplog.at_level(logging.WARNING, logger="gateway.dispatch"):
        app.extensions["gateway"].dispatcher.run_until_idle()
    assert later.calls == []
    assert any("lease lost" in r.getMessage() for r in caplog.records)
    assert store.extend_claim(pk_of(app, "evt_1"), "other-worker", clock.now + 5)


def test_graceful_stop_releases_claimed_but_unstarted_events(make_app, connect, clock):
    app = make_app()
    store = app.extensions["gateway"].store
    dispatcher = app.extensions["gateway"].dispatcher
    started, proceed = threading.Event(), threading.Event()
    seen: list[str] = []

    def blocking(source: str, event: Event) -> None:
        seen.append(event.id)
        started.set()
        assert proceed.wait(timeout=10)

    connect(TYPE, blocking)
    for n in range(3):
        post(app, f"evt_{n}")
    dispatcher.start()
    try:
        assert started.wait(timeout=10)
        stopper = threading.Thread(target=dispatcher.stop, args=(10.0,))
        stopper.start()
        for _ in range(1000):  # until stop() has asked the thread to stop
            if dispatcher._stopping.is_set():
                break
            stopper.join(timeout=0.01)
        proceed.set()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        assert not dispatcher.is_running()
    finally:
        proceed.set()
        dispatcher.stop(1.0)

    assert seen == ["evt_0"]
    assert store.get_event(pk_of(app, "evt_0")).status == "done"
    free = store.claim_due("next-worker", now=clock.now, lease_seconds=60)
    assert sorted(s.event.id for s in free) == ["evt_1", "evt_2"]
    assert all(store.handler_runs(s.pk) == {} for s in free)


def test_background_dispatcher_handles_a_delivery_after_wake(make_app, connect):
    app = make_app(GATEWAY_POLL_SECONDS="30")
    done = threading.Event()
    connect(TYPE, lambda source, event: done.set())
    dispatcher = app.extensions["gateway"].dispatcher
    dispatcher.start()
    try:
        post(app, "evt_1")
        assert done.wait(timeout=10)
    finally:
        dispatcher.stop(5.0)


@pytest.mark.parametrize("value", ["-1", "many"])
def test_bad_retry_setting_stops_start_up(make_app, value):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match="GATEWAY_MAX_RETRIES"):
        make_app(GATEWAY_MAX_RETRIES=value)
