"""One store test suite, run against SQLite and against PostgreSQL.

Every test takes ``open_stores``, a factory of stores on one database:
two stores opened by it see the same data, as two worker processes do.
The PostgreSQL run needs the server on 127.0.0.1:5432 (skipped when
absent, failing under ``CI=true``) and gets a fresh schema per test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError, StoreError
from gateway.store import PostgresStore, Store, open_store

NOW = 1767225600.0
LEASE = 30.0
CLOSED_PORT_URL = "postgresql://postgres@127.0.0.1:1/test"


def make_event(event_id: str, *, source: str = "integration", at: float = NOW) -> Any:
    from gateway.events import Event

    return Event(
        id=event_id,
        type="message.delivered",
        source=source,
        received_at=datetime.fromtimestamp(at, tz=UTC),
        payload={"id": event_id, "type": "message.delivered", "data": {"n": 1}},
        headers={"content-type": "application/json"},
    )


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database of each back-end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def open_stores(store_url: str) -> Iterator[Callable[[], Store]]:
    """Factory: a new migrated store on the test database, closed afterwards."""
    opened: list[Store] = []

    def factory() -> Store:
        store = open_store(store_url)
        store.migrate()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def db(open_stores: Callable[[], Store]) -> Store:
    """One store on the test database."""
    return open_stores()


def insert(store: Store, *event_ids: str, at: float = NOW) -> list[int]:
    """Insert events and return their store keys."""
    for event_id in event_ids:
        assert store.insert_event(make_event(event_id, at=at))
    return [_pk(store, event_id) for event_id in event_ids]


def _pk(store: Store, event_id: str) -> int:
    found = store.find_event(event_id)
    assert found is not None
    return found.pk


def claim(store: Store, owner: str, *, now: float = NOW, limit: int = 10) -> list[int]:
    claimed = store.claim_due(owner, now=now, lease_seconds=LEASE, limit=limit)
    return [stored.pk for stored in claimed]


def run(store: Store, pk: int, handler: str, status: str, attempt: int = 1) -> None:
    store.record_attempt(
        pk,
        handler,
        attempt=attempt,
        status=status,
        error=None if status == "ok" else "RuntimeError: boom",
        duration_ms=1.5,
        now=NOW + attempt,
        next_attempt_at=NOW + 100 if status == "retrying" else None,
    )


# -- the inbox ----------------------------------------------------------------


def test_insert_stores_an_event_once_and_reports_a_repeat(db):
    assert db.insert_event(make_event("evt_1"), key_id="#0") is True
    assert db.insert_event(make_event("evt_1")) is False
    stored = db.find_event("evt_1", "integration")
    assert stored is not None
    assert stored.status == "pending"
    assert stored.key_id == "#0"
    assert stored.event.payload["data"] == {"n": 1}
    assert db.counts_by_status() == {"pending": 1}


def test_same_id_from_another_source_is_a_new_event(db):
    assert db.insert_event(make_event("evt_1", source="github"))
    assert db.insert_event(make_event("evt_1", source="stripe"))
    assert db.counts_by_status() == {"pending": 2}


def test_deduplication_holds_across_two_store_instances(open_stores):
    first, second = open_stores(), open_stores()
    assert first.insert_event(make_event("evt_1"))
    assert second.insert_event(make_event("evt_1")) is False
    assert second.counts_by_status() == {"pending": 1}


def test_concurrent_inserts_of_one_event_store_it_once(open_stores):
    stores = [open_stores() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[bool] = []

    def insert_once(store: Store) -> None:
        barrier.wait(timeout=10)
        results.append(store.insert_event(make_event("evt_race")))

    threads = [threading.Thread(target=insert_once, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, False, False, True]
    stored = stores[0].find_event("evt_race")
    assert stored is not None and stored.duplicates == 3


def test_repeat_deliveries_are_counted_on_the_stored_event(db):
    assert db.insert_event(make_event("evt_1"), key_id="#0")
    assert db.insert_event(make_event("evt_1", at=NOW + 5), key_id="#1") is False
    assert db.insert_event(make_event("evt_1", at=NOW + 9)) is False
    stored = db.find_event("evt_1", "integration")
    assert stored is not None
    assert (stored.duplicates, stored.last_duplicate_at) == (2, NOW + 9)
    assert stored.event.received_at.timestamp() == NOW
    assert (stored.status, stored.key_id) == ("pending", "#0")


def test_new_event_has_no_duplicates(db):
    insert(db, "evt_1")
    stored = db.find_event("evt_1")
    assert stored is not None
    assert (stored.duplicates, stored.last_duplicate_at) == (0, None)


def test_repeats_committed_together_are_each_counted(db):
    # Threads of one store share group-commit batches, so some repeats
    # are written in the same transaction as the first insert.
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[bool] = []

    def insert_once() -> None:
        barrier.wait(timeout=10)
        results.append(db.insert_event(make_event("evt_burst")))

    threads = [threading.Thread(target=insert_once) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] * (threads_count - 1) + [True]
    stored = db.find_event("evt_burst")
    assert stored is not None and stored.duplicates == threads_count - 1


def test_duplicated_filter_lists_only_events_with_repeats(db):
    insert(db, "evt_1", "evt_2", "evt_3")
    for event_id in ("evt_1", "evt_3", "evt_3"):
        assert db.insert_event(make_event(event_id)) is False
    found = db.list_events(duplicated=True)
    assert [(item.event.id, item.duplicates) for item in found] == [
        ("evt_3", 2),
        ("evt_1", 1),
    ]
    assert db.count_events(duplicated=True) == 2
    assert [item.event.id for item in db.list_events(duplicated=True, limit=1)] == [
        "evt_3"
    ]


OLD_EVENTS_TABLE = """CREATE TABLE events (
    pk {serial} PRIMARY KEY,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    received_at {real} NOT NULL,
    payload TEXT NOT NULL,
    headers TEXT NOT NULL,
    key_id TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    next_attempt_at {real} NOT NULL,
    lease_owner TEXT,
    lease_until {real},
    finished_at {real},
    UNIQUE (source, event_id)
)"""


def test_migrate_upgrades_a_database_made_before_duplicate_counting(store_url):
    store = open_store(store_url)
    try:
        serial, real = store._column_types()
        store.execute(OLD_EVENTS_TABLE.format(serial=serial, real=real))
        store.execute(
            "INSERT INTO events (source, event_id, type, received_at, payload,"
            " headers, status, next_attempt_at) VALUES"
            " ('integration', 'evt_old', 'ping', ?, '{}', '{}', 'done', ?)",
            (NOW, NOW),
        )
        store.migrate()
        store.migrate()
        old = store.find_event("evt_old")
        assert old is not None
        assert (old.duplicates, old.last_duplicate_at, old.status) == (0, None, "done")
        assert store.insert_event(make_event("evt_old", at=NOW + 1)) is False
        assert store.insert_event(make_event("evt_new"))
        old = store.find_event("evt_old")
        assert old is not None and (old.duplicates, old.last_duplicate_at) == (
            1,
            NOW + 1,
        )
        assert [item.event.id for item in store.list_events(duplicated=True)] == [
            "evt_old"
        ]
    finally:
        store.close()


# -- claims and leases --------------------------------------------------------


def test_two_owners_never_claim_the_same_event(open_stores):
    first, second = open_stores(), open_stores()
    pks = insert(first, *(f"evt_{n}" for n in range(6)))
    taken_by_a = claim(first, "a", limit=4)
    taken_by_b = claim(second, "b", limit=10)
    assert len(taken_by_a) == 4
    assert set(taken_by_a).isdisjoint(taken_by_b)
    assert sorted(taken_by_a + taken_by_b) == sorted(pks)
    assert claim(first, "c") == []


def test_concurrent_claims_from_threads_share_out_every_event_once(open_stores):
    stores = [open_stores() for _ in range(2)]
    pks = insert(stores[0], *(f"evt_{n}" for n in range(60)))
    taken: list[int] = []
    taken_lock = threading.Lock()
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def drain(store: Store, owner: str) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(100):
                got = claim(store, owner, limit=3)
                if not got:
                    return
                with taken_lock:
                    taken.extend(got)
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    threads = [
        threading.Thread(target=drain, args=(stores[n % 2], f"owner-{n}"))
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(taken) == len(set(taken)), "an event was claimed twice"
    assert sorted(taken) == sorted(pks)


def test_claim_takes_only_due_events_oldest_first(db):
    early, late = insert(db, "evt_early", "evt_late")
    db.finish_claim(late, "nobody", status="pending", next_attempt_at=0, now=NOW)
    assert claim(db, "a", now=NOW - 1) == []
    assert claim(db, "a", limit=1) == [early]


def test_expired_lease_is_claimed_again_by_another_owner(db):
    (pk,) = insert(db, "evt_1")
    assert claim(db, "dead-worker") == [pk]
    assert claim(db, "b", now=NOW + LEASE - 1) == []
    assert claim(db, "b", now=NOW + LEASE + 1) == [pk]


def test_extended_lease_is_not_claimed_and_only_its_owner_extends(db):
    (pk,) = insert(db, "evt_1")
    claim(db, "a")
    assert db.extend_claim(pk, "a", NOW + 3 * LEASE) is True
    assert db.extend_claim(pk, "b", NOW + 9 * LEASE) is False
    assert claim(db, "b", now=NOW + 2 * LEASE) == []
    assert claim(db, "b", now=NOW + 3 * LEASE + 1) == [pk]


def test_extend_fails_once_another_owner_took_the_expired_lease(db):
    (pk,) = insert(db, "evt_1")
    claim(db, "slow")
    claim(db, "b", now=NOW + LEASE + 1)
    assert db.extend_claim(pk, "slow", NOW + 5 * LEASE) is False


def test_finish_sets_status_and_frees_the_event(db):
    done, dead, retry = insert(db, "evt_done", "evt_dead", "evt_retry")
    claim(db, "a")
    db.finish_claim(done, "a", status="done", next_attempt_at=NOW, now=NOW)
    db.finish_claim(dead, "a", status="dead", next_attempt_at=NOW, now=NOW)
    db.finish_claim(retry, "a", status="pending", next_attempt_at=NOW + 8, now=NOW)
    statuses = {pk: db.get_event(pk).status for pk in (done, dead, retry)}
    assert statuses == {done: "done", dead: "dead", retry: "pending"}
    assert claim(db, "b", now=NOW + 7) == []
    assert claim(db, "b", now=NOW + 8) == [retry]


def test_finish_by_an_owner_that_lost_the_lease_changes_nothing(db):
    (pk,) = insert(db, "evt_1")
    claim(db, "old")
    claim(db, "new", now=NOW + LEASE + 1)
    db.finish_claim(pk, "old", status="done", next_attempt_at=NOW, now=NOW)
    assert db.get_event(pk).status == "pending"
    assert db.extend_claim(pk, "new", NOW + 5 * LEASE) is True


def test_finish_refuses_an_unknown_status(db):
    (pk,) = insert(db, "evt_1")
    with pytest.raises(ValueError):
        db.finish_claim(pk, "a", status="finished", next_attempt_at=NOW, now=NOW)


def test_released_claims_are_claimable_at_once(db):
    pks = insert(db, "evt_1", "evt_2", "evt_3")
    claim(db, "stopping")
    assert db.release_claims("stopping") == 3
    assert db.release_claims("stopping") == 0
    assert sorted(claim(db, "b")) == sorted(pks)


# -- handler outcomes ------------------------------------------------------


def test_record_attempt_keeps_the_latest_run_and_every_attempt(db):
    (pk,) = insert(db, "evt_1")
    run(db, pk, "h.bad", "retrying", attempt=1)
    run(db, pk, "h.bad", "dead", attempt=2)
    run(db, pk, "h.good", "ok")
    runs = db.handler_runs(pk)
    assert set(runs) == {"h.bad", "h.good"}
    assert runs["h.bad"].status == "dead"
    assert runs["h.bad"].attempts == 2
    assert runs["h.bad"].last_error == "RuntimeError: boom"
    assert runs["h.good"].status == "ok"
    assert runs["h.good"].last_error is None
    history = [(a.handler, a.attempt, a.status) for a in db.attempts(pk)]
    assert history == [
        ("h.bad", 1, "retrying"),
        ("h.good", 1, "ok"),
        ("h.bad", 2, "dead"),
    ]


def test_record_attempt_refuses_an_unknown_status(db):
    (pk,) = insert(db, "evt_1")
    with pytest.raises(ValueError):
        run(db, pk, "h", "failed")


def test_dead_letters_list_each_dead_pair_with_its_error(db):
    first, second = insert(db, "evt_1", "evt_2")
    run(db, first, "h.bad", "dead", attempt=4)
    run(db, first, "h.good", "ok")
    run(db, second, "h.other", "retrying")
    letters = db.dead_letters()
    assert [(d.event_id, d.handler, d.attempts) for d in letters] == [
        ("evt_1", "h.bad", 4)
    ]
    assert letters[0].last_error == "RuntimeError: boom"
    assert db.dead_letter_pks() == [first]


# -- replay and retention ---------------------------------------------------


def _with_three_outcomes(store: Store) -> int:
    (pk,) = insert(store, "evt_1")
    claim(store, "a")
    run(store, pk, "h.ok", "ok")
    run(store, pk, "h.dead", "dead", attempt=4)
    run(store, pk, "h.retrying", "retrying")
    store.finish_claim(pk, "a", status="dead", next_attempt_at=NOW, now=NOW)
    return pk


def test_requeue_resets_dead_and_retrying_handlers_but_keeps_succeeded(db):
    pk = _with_three_outcomes(db)
    assert db.requeue([pk], now=NOW + 50) == 1
    assert set(db.handler_runs(pk)) == {"h.ok"}
    assert db.get_event(pk).status == "pending"
    assert claim(db, "b", now=NOW + 50) == [pk]


def test_requeue_with_include_succeeded_resets_every_handler(db):
    pk = _with_three_outcomes(db)
    db.requeue([pk], now=NOW, include_succeeded=True)
    assert db.handler_runs(pk) == {}


def test_requeue_for_named_handlers_resets_only_those(db):
    pk = _with_three_outcomes(db)
    db.requeue([pk], now=NOW, handlers=["h.dead"])
    assert set(db.handler_runs(pk)) == {"h.ok", "h.retrying"}
    db.requeue([pk], now=NOW, handlers=["h.ok"], include_succeeded=True)
    assert set(db.handler_runs(pk)) == {"h.retrying"}


def test_requeue_of_an_unknown_event_queues_nothing(db):
    assert db.requeue([424242], now=NOW) == 0


def test_purge_forgets_dead_letters_and_closes_their_events(db):
    first, second = _with_three_outcomes(db), insert(db, "evt_2")[0]
    run(db, second, "h.dead", "dead")
    db.finish_claim(second, "a", status="dead", next_attempt_at=NOW, now=NOW)
    assert db.purge_dead_letters([second]) == 1
    assert [d.event_id for d in db.dead_letters()] == ["evt_1"]
    assert db.purge_dead_letters([]) == 0
    assert db.purge_dead_letters() == 1
    assert db.dead_letters() == []
    assert db.get_event(first).status == "done"


def test_prune_deletes_old_handled_events_and_keeps_pending_and_dead(db):
    old, old_pending, old_dead = insert(
        db, "evt_old", "evt_old_pending", "evt_old_dead", at=NOW - 1000
    )
    (young,) = insert(db, "evt_young")
    claim(db, "a")
    run(db, old, "h", "ok")
    run(db, old_dead, "h", "dead")
    db.finish_claim(old, "a", status="done", next_attempt_at=NOW, now=NOW)
    db.finish_claim(old_dead, "a", status="dead", next_attempt_at=NOW, now=NOW)
    db.finish_claim(young, "a", status="done", next_attempt_at=NOW, now=NOW)
    assert db.prune(older_than=NOW - 10) == 1
    assert db.get_event(old) is None
    assert db.attempts(old) == []
    kept = {db.get_event(pk).event.id for pk in (old_pending, old_dead, young)}
    assert kept == {"evt_old_pending", "evt_old_dead", "evt_young"}
    assert [d.event_id for d in db.dead_letters()] == ["evt_old_dead"]


# -- reading --------------------------------------------------------------


def test_backlog_counts_pending_events_and_the_oldest_receipt(db):
    assert db.backlog() == (0, None)
    first, _ = insert(db, "evt_1", "evt_2", at=NOW - 60)
    insert(db, "evt_3")
    claim(db, "a", limit=1)
    db.finish_claim(first, "a", status="done", next_attempt_at=NOW, now=NOW)
    assert db.backlog() == (2, NOW - 60)
    assert db.counts_by_status() == {"pending": 2, "done": 1}


def test_list_events_filters_and_pages(db):
    insert(db, "evt_1", "evt_2", "evt_3")
    newest_first = [s.event.id for s in db.list_events(limit=2)]
    assert newest_first == ["evt_3", "evt_2"]
    before = db.list_events(limit=2)[-1].pk
    assert [s.event.id for s in db.list_events(before_pk=before)] == ["evt_1"]
    assert db.list_events(type_prefix="message.*", limit=10)[0].event.id == "evt_3"
    assert db.list_events(type_prefix="order.*") == []
    assert db.list_events(source="github") == []


def test_ping_answers_on_a_reachable_store(db):
    db.ping()


def test_migrating_twice_concurrently_is_safe(store_url):
    stores = [open_store(store_url) for _ in range(3)]
    barrier = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def migrate(store: Store) -> None:
        try:
            barrier.wait(timeout=10)
            store.migrate()
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        stores[0].migrate()
        assert stores[1].insert_event(make_event("evt_after_migrations"))
    finally:
        for store in stores:
            store.close()


# -- message status (CONTRACT.md section 7) ---------------------------------


def test_message_status_never_moves_backwards(db):
    arrivals = iter(range(10))

    def record(status: str, rank: int) -> bool:
        return db.record_message_status(
            "msg_1",
            status=status,
            rank=rank,
            status_at=None,
            event_id=None,
            error=None,
            now=NOW + next(arrivals),
        )

    assert record("sent", 1) is True
    assert record("read", 4) is True
    assert record("delivered", 3) is False
    assert db.message_status("msg_1") == "read"
    assert [u.status for u in db.message_history("msg_1")] == [
        "sent",
        "read",
        "delivered",
    ]
    assert db.message_counts() == {"read": 1}


# -- PostgreSQL specifics ---------------------------------------------------


@pytest.mark.postgres
def test_postgres_pool_is_sized_from_gateway_db_pool_size(make_app, postgres_url):
    app = make_app(GATEWAY_DATABASE_URL=postgres_url, GATEWAY_DB_POOL_SIZE="3")
    store = app.extensions["gateway"].store
    try:
        assert isinstance(store, PostgresStore)
        assert store.pool_size == 3
        store.ping()
    finally:
        store.close()


def test_pool_size_must_be_a_positive_whole_number(make_app):
    with pytest.raises(ConfigError, match="GATEWAY_DB_POOL_SIZE"):
        make_app(GATEWAY_DB_POOL_SIZE="0")


def test_unreachable_postgres_raises_store_error_not_a_driver_error():
    store = PostgresStore(CLOSED_PORT_URL, timeout_seconds=0.5)
    try:
        with pytest.raises(StoreError):
            store.ping()
    finally:
        store.close()
