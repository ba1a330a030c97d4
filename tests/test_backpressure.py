"""Backpressure: 503 with Retry-After over the backlog marks, nothing dropped."""

from __future__ import annotations

from gateway.backpressure import Backpressure
from gateway.errors import StoreError
from tests.helpers import deliver


def test_backlog_over_high_water_refuses_new_deliveries_with_retry_after(
    make_app, clock
):
    app = make_app(GATEWAY_BACKLOG_HIGH_WATER="3")
    client = app.test_client()
    answers = []
    for number in range(6):
        answers.append(deliver(client, f"e{number}"))
        clock.advance(2)  # past the backlog cache
    assert [answer.status_code for answer in answers] == [202] * 4 + [503] * 2
    refused = answers[-1]
    assert refused.json["code"] == "unavailable"
    assert int(refused.headers["Retry-After"]) > 0


def test_readiness_says_why_deliveries_are_refused(make_app, clock):
    app = make_app(GATEWAY_BACKLOG_HIGH_WATER="1")
    client = app.test_client()
    deliver(client, "e1")
    deliver(client, "e2")
    clock.advance(2)
    response = client.get("/readyz")
    assert response.status_code == 503
    reason = response.json["checks"]["backlog"]
    assert reason == "2 events pending, over the high-water mark of 1"


def test_readiness_reports_backlog_ok_below_the_mark(make_app):
    client = make_app(GATEWAY_BACKLOG_HIGH_WATER="10").test_client()
    deliver(client, "e1")
    response = client.get("/readyz")
    assert response.json["checks"]["backlog"] == "ok"


def test_old_pending_event_refuses_new_deliveries(make_app, clock):
    app = make_app(GATEWAY_BACKLOG_MAX_AGE_SECONDS="60")
    client = app.test_client()
    assert deliver(client, "e1").status_code == 202
    clock.advance(61)
    refused = deliver(client, "e2")
    assert refused.status_code == 503
    assert "Retry-After" in refused.headers
    assert (
        client.get("/readyz").json["checks"]["backlog"]
        == "oldest pending event is 61 s old, over the limit of 60 s"
    )


def test_deliveries_are_taken_again_once_the_backlog_drains(make_app, clock, connect):
    app = make_app(GATEWAY_BACKLOG_HIGH_WATER="2")
    gateway = app.extensions["gateway"]
    client = app.test_client()
    handled: list[str] = []
    connect("ping", lambda source, event: handled.append(event.id))
    accepted = []
    for number in range(5):
        answer = deliver(client, f"e{number}")
        if answer.status_code == 202:
            accepted.append(f"e{number}")
        clock.advance(2)
    assert len(accepted) == 3
    gateway.dispatcher.run_until_idle()
    clock.advance(2)
    assert deliver(client, "e-after").status_code == 202
    gateway.dispatcher.run_until_idle()
    assert sorted(handled) == sorted(accepted + ["e-after"])


def test_marks_at_zero_never_refuse(make_app, clock):
    client = make_app().test_client()
    answers = [deliver(client, f"e{number}").status_code for number in range(5)]
    assert answers == [202] * 5
    assert "backlog" not in client.get("/readyz").json["checks"]


def test_backlog_is_read_at_most_once_per_cache_period(store, clock):
    reads: list[int] = []
    original = store.backlog

    def counting() -> tuple[int, float | None]:
        reads.append(1)
        return original()

    store.backlog = counting  # type: ignore[method-assign]
    backpressure = Backpressure(store, high_water=5, clock=clock)
    for _ in range(10):
        backpressure.check()
    clock.advance(1.5)
    backpressure.check()
    assert len(reads) == 2


def test_unreadable_backlog_does_not_refuse(store, clock):
    def failing() -> tuple[int, float | None]:
        raise StoreError("down")

    store.backlog = failing  # type: ignore[method-assign]
    backpressure = Backpressure(store, high_water=1, clock=clock)
    backpressure.check()
    assert backpressure.state() is None
