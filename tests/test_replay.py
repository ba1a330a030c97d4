"""Retention: old handled events are pruned, dead letters are kept.

The dispatcher prunes with ``GATEWAY_RETENTION_DAYS``; ``gateway.replay``
offers the same pruning to operators' scripts.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.dispatch import DoNotRetry
from gateway.replay import prune, replay_dead_letters
from tests.test_dispatch import TYPE, Recorder, pk_of, post

DAY = 86_400

pytestmark = pytest.mark.usefixtures("isolated_handlers")


def dispatched_app(make_app: Any, connect: Any, **config: str) -> tuple[Any, Recorder]:
    app = make_app(**config)
    handler = Recorder()
    connect(TYPE, handler)
    return app, handler


def test_dispatcher_prunes_handled_events_older_than_the_retention(
    make_app, connect, clock
):
    app, _ = dispatched_app(make_app, connect, GATEWAY_RETENTION_DAYS="2")
    gateway = app.extensions["gateway"]
    post(app, "evt_old")
    gateway.dispatcher.run_until_idle()
    clock.advance(3 * DAY)
    post(app, "evt_new")
    gateway.dispatcher.run_until_idle()

    assert gateway.dispatcher.prune_if_due() == 1
    assert gateway.store.find_event("evt_old") is None
    assert gateway.store.find_event("evt_new") is not None


def test_dispatcher_prunes_at_most_once_per_interval(make_app, connect, clock):
    app, _ = dispatched_app(make_app, connect, GATEWAY_RETENTION_DAYS="1")
    dispatcher = app.extensions["gateway"].dispatcher
    assert dispatcher.prune_if_due() == 0
    post(app, "evt_1")
    dispatcher.run_until_idle()
    clock.advance(2 * DAY)
    assert dispatcher.prune_if_due() == 1
    post(app, "evt_2")
    dispatcher.run_until_idle()
    clock.advance(2 * DAY)
    assert dispatcher.prune_if_due() == 1
    post(app, "evt_3")
    dispatcher.run_until_idle()
    clock.advance(1 * DAY + 1)
    dispatcher.last_prune_at = clock.now - 60
    assert dispatcher.prune_if_due() == 0


def test_zero_retention_turns_pruning_off(make_app, connect, clock):
    app, _ = dispatched_app(make_app, connect, GATEWAY_RETENTION_DAYS="0")
    post(app, "evt_1")
    app.extensions["gateway"].dispatcher.run_until_idle()
    clock.advance(365 * DAY)
    assert app.extensions["gateway"].dispatcher.prune_if_due() == 0


def test_retention_default_is_thirty_days(make_app):
    assert make_app().extensions["gateway"].dispatcher.retention_days == 30


def test_pending_events_are_not_pruned(make_app, clock):
    app = make_app()
    post(app, "evt_waiting")
    clock.advance(90 * DAY)
    assert prune(app.extensions["gateway"].store, retention_days=1, now=clock.now) == 0
    assert app.extensions["gateway"].store.find_event("evt_waiting") is not None


def test_dead_letters_are_kept_until_replayed(make_app, connect, clock):
    app = make_app()
    store = app.extensions["gateway"].store
    handler = Recorder(failing=True, error=DoNotRetry)
    connect(TYPE, handler)
    post(app, "evt_dead")
    app.extensions["gateway"].dispatcher.run_until_idle()
    clock.advance(90 * DAY)

    assert prune(store, retention_days=30, now=clock.now) == 0
    assert [letter.event_id for letter in store.dead_letters()] == ["evt_dead"]

    handler.failing = False
    replay_dead_letters(store, now=clock.now)
    app.extensions["gateway"].dispatcher.run_until_idle()
    assert prune(store, retention_days=30, now=clock.now) == 1


def test_purged_dead_letters_become_prunable(make_app, connect, clock):
    app = make_app()
    store = app.extensions["gateway"].store
    connect(TYPE, Recorder(failing=True, error=DoNotRetry))
    post(app, "evt_dead")
    app.extensions["gateway"].dispatcher.run_until_idle()
    clock.advance(90 * DAY)

    assert store.purge_dead_letters([pk_of(app, "evt_dead")]) == 1
    assert prune(store, retention_days=30, now=clock.now) == 1
    assert store.find_event("evt_dead") is None
