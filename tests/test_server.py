"""Delivery guarantees on a real gunicorn with two workers.

Exactly-once dispatch and deduplication across workers, the rate limit
through gunicorn, at-least-once dispatch through a worker killed with
SIGKILL (PostgreSQL store), and a graceful SIGTERM that leaves no stale
lease. The handlers of ``tests.handlers_for_tests`` record every call in
a file, so calls can be counted across processes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.store import Store, open_store
from tests.servers import HANDLERS_MODULE, GatewayServer, read_calls, wait_until

pytestmark = pytest.mark.server

HANDLERS = ("first", "second")
LIMITED_SOURCES_TOML = """
[sources.integration]
scheme = "hmac-sha256"
secrets = ["testsecret"]

[sources.limited]
scheme = "hmac-sha256"
secrets = ["testsecret"]
rate_limit = "5 per minute"
"""


def handler_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    calls = tmp_path / "calls"
    calls.mkdir(exist_ok=True)
    env = {
        "GATEWAY_HANDLERS": HANDLERS_MODULE,
        "GATEWAY_TEST_CALLS_DIR": str(calls),
        "GATEWAY_POLL_SECONDS": "0.2",
        "RATELIMIT_DEFAULT": "100000 per minute",
    }
    env.update(extra)
    return env


def reached_every_handler(calls_dir: Path, event_ids: set[str]) -> set[str]:
    """Return the events among ``event_ids`` that every handler has run."""
    seen: dict[str, set[str]] = {name: set() for name in HANDLERS}
    for call in read_calls(calls_dir):
        seen[call.handler].add(call.event_id)
    return event_ids.intersection(*seen.values())


def stored_ids(store: Store, limit: int = 10_000) -> set[str]:
    return {stored.event.id for stored in store.list_events(limit=limit)}


def test_delivery_is_dispatched_once_across_two_workers(tmp_path):
    env = handler_env(tmp_path)
    event_ids = {f"evt_once_{n}" for n in range(20)}
    with GatewayServer(tmp_path, workers=2, env=env) as server:
        # Started means every worker has forked (tests/servers.py).
        assert len(server.worker_pids()) == 2
        first = [server.post_event(event_id) for event_id in sorted(event_ids)]
        repeat = [server.post_event(event_id) for event_id in sorted(event_ids)]
        wait_until(
            lambda: reached_every_handler(tmp_path / "calls", event_ids) == event_ids,
            timeout=60,
            what="every event to reach both handlers",
        )
        store = open_store(f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
        try:
            wait_until(
                lambda: store.counts_by_status() == {"done": 20},
                timeout=30,
                what="every event to be marked done",
            )
        finally:
            store.close()

    assert [r.status_code for r in first] == [202] * 20
    assert [r.status_code for r in repeat] == [200] * 20
    assert all(r.json()["duplicate"] is True for r in repeat)
    runs = Counter((c.handler, c.event_id) for c in read_calls(tmp_path / "calls"))
    assert set(runs.values()) == {1}, "a handler ran an event twice"
    assert len(runs) == 40


def test_rate_limit_refuses_past_the_limit_across_workers(tmp_path):
    (tmp_path / "sources.toml").write_text(LIMITED_SOURCES_TOML)
    env = {"GATEWAY_CONFIG": str(tmp_path / "sources.toml"), "GATEWAY_ACCESS_LOG": ""}
    with GatewayServer(tmp_path, workers=2, env=env) as server:
        # In-memory counting is per worker: two workers accept at most 2 x 5.
        responses = [
            server.post_event(f"evt_limit_{n}", source="limited") for n in range(11)
        ]
    statuses = [response.status_code for response in responses]
    refused = [response for response in responses if response.status_code == 429]
    assert statuses.count(202) <= 10
    assert refused, f"nothing was refused: {statuses}"
    assert refused[0].json()["code"] == "rate_limited"
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert set(statuses) <= {202, 429}


@pytest.mark.postgres
def test_killed_worker_loses_no_acknowledged_event(tmp_path, postgres_url):
    total = 300
    env = handler_env(
        tmp_path,
        GATEWAY_DATABASE_URL=postgres_url,
        GATEWAY_LEASE_SECONDS="3",
        GATEWAY_TEST_HANDLER_DELAY_MS="20",
    )
    calls_dir = tmp_path / "calls"
    acknowledged: set[str] = set()
    answers: Counter[str] = Counter()
    summary: dict[str, Any] = {"sent": total}
    with GatewayServer(tmp_path, workers=2, env=env) as server:

        def send(numbers: range) -> None:
            for n in numbers:
                event_id = f"evt_fault_{n}"
                try:
                    response = server.post_event(event_id)
                except requests.RequestException:
                    answers["connection error"] += 1
                    continue
                answers[str(response.status_code)] += 1
                if 200 <= response.status_code < 300:
                    acknowledged.add(event_id)

        # Deliveries keep arriving while the worker is killed, so some
        # may be in flight in it: those get no 2xx and are not counted.
        sender = threading.Thread(target=send, args=(range(total),))
        sender.start()
        try:
            wait_until(
                lambda: len(read_calls(calls_dir)) >= 20,
                timeout=60,
                what="dispatch to be under way",
            )
            workers = server.worker_pids()
            latest = [c.pid for c in read_calls(calls_dir) if c.pid in workers]
            victim = latest[-1] if latest else workers[0]
            os.kill(victim, signal.SIGKILL)
            summary["killed_worker_mid_dispatch"] = bool(latest)
            summary["sent_before_kill"] = sum(answers.values())
        finally:
            sender.join(timeout=120)
        restarted = wait_until(
            lambda: (
                len(pids := server.worker_pids()) == 2 and victim not in pids and pids
            ),
            timeout=60,
            what="gunicorn to replace the killed worker",
        )
        try:
            wait_until(
                lambda: reached_every_handler(calls_dir, acknowledged) == acknowledged,
                timeout=180,
                interval=0.25,
                what="every acknowledged event to reach every handler",
            )
        finally:
            store = open_store(postgres_url)
            try:
                stored = stored_ids(store)
            finally:
                store.close()
            calls = read_calls(calls_dir)
            runs = Counter((c.handler, c.event_id) for c in calls)
            summary.update(
                acknowledged=len(acknowledged),
                answers=dict(answers),
                stored=len(stored),
                dispatched=len(reached_every_handler(calls_dir, acknowledged)),
                handler_calls=len(calls),
                duplicates_run=sum(count - 1 for count in runs.values()),
                workers_that_ran_handlers=len({c.pid for c in calls}),
                killed=victim,
                replacements=[pid for pid in restarted if pid not in workers],
            )
            (tmp_path / "summary.txt").write_text(f"{summary}\n")
            print(f"fault test: {summary}")

    assert acknowledged - stored == set(), f"acknowledged but not stored: {summary}"
    assert summary["dispatched"] == len(acknowledged), summary
    assert len(acknowledged) >= total * 0.9, summary
    assert summary["killed_worker_mid_dispatch"], summary


def test_sigterm_finishes_or_releases_claims_and_restart_resumes(tmp_path):
    env = handler_env(
        tmp_path, GATEWAY_LEASE_SECONDS="60", GATEWAY_TEST_HANDLER_DELAY_MS="200"
    )
    calls_dir = tmp_path / "calls"
    event_ids = {f"evt_term_{n}" for n in range(20)}
    server = GatewayServer(tmp_path, workers=2, env=env)
    with server:
        statuses = [server.post_event(event_id).status_code for event_id in event_ids]
        wait_until(
            lambda: len(read_calls(calls_dir)) >= 2,
            timeout=30,
            what="handlers to be running",
        )
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # gunicorn.conf.py gives workers a graceful timeout of 25 s.
        exit_code = server.process.wait(timeout=40)
    assert statuses == [202] * 20
    assert exit_code == 0, server.log()[-3000:]

    store = open_store(f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
    try:
        pending = store.counts_by_status().get("pending", 0)
        # A stale lease would hide its event from a claim made now.
        claimable = store.claim_due("probe", now=time.time(), lease_seconds=1, limit=50)
        store.release_claims("probe")
    finally:
        store.close()
    assert pending > 0, "the shutdown came too late to test anything"
    assert len(claimable) == pending, "an event kept a stale lease after shutdown"

    with GatewayServer(tmp_path, workers=2, env=env):
        wait_until(
            lambda: reached_every_handler(calls_dir, event_ids) == event_ids,
            timeout=60,
            what="the restarted gateway to finish every event",
        )
