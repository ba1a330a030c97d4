"""Per-handler circuit breaker: pause, wait without attempts, probe, resume."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from gateway.breaker import CircuitBreaker
from gateway.dispatch import DoNotRetry
from tests import helpers

BREAKER = {"GATEWAY_BREAKER_FAILURES": "3", "GATEWAY_BREAKER_COOLDOWN_SECONDS": "30"}


def deliver(client: Any, event_id: str) -> None:
    assert helpers.deliver(client, event_id).status_code == 202


def sample(name: str, handler: str) -> float:
    return REGISTRY.get_sample_value(name, {"handler": handler}) or 0.0


class Flaky:
    """A handler that fails while ``broken`` is set; records what it saw."""

    def __init__(self) -> None:
        self.broken = True
        self.calls: list[str] = []

    def __call__(self, source: str, event: Any) -> None:
        self.calls.append(event.id)
        if self.broken:
            raise RuntimeError("downstream is down")


@pytest.fixture
def setup(make_app, connect):
    app = make_app(**BREAKER)
    gateway = app.extensions["gateway"]
    flaky = Flaky()
    healthy: list[str] = []
    connect("ping", flaky)
    connect("ping", lambda source, event: healthy.append(event.id))
    return app.test_client(), gateway, flaky, healthy


def runs_of(gateway: Any, event_id: str) -> dict[str, Any]:
    stored = gateway.store.find_event(event_id)
    return {
        name.rsplit(".", 1)[-1]: run
        for name, run in gateway.store.handler_runs(stored.pk).items()
    }


def test_handler_failing_n_times_is_paused_and_its_events_wait(setup):
    client, gateway, flaky, healthy = setup
    name = "tests.test_breaker.Flaky"
    paused_before = sample("gateway_handler_paused_events_total", name)
    for number in range(5):
        deliver(client, f"e{number}")
    gateway.dispatcher.run_until_idle()
    assert flaky.calls == ["e0", "e1", "e2"]
    assert healthy == ["e0", "e1", "e2", "e3", "e4"]
    assert "Flaky" not in runs_of(gateway, "e3")  # no attempt recorded
    assert gateway.store.find_event("e3").status == "pending"
    assert gateway.store.dead_letters() == []
    assert sample("gateway_handler_paused_events_total", name) - paused_before == 2
    assert sample("gateway_handler_breaker_open", name) == 1


def test_paused_handler_is_probed_once_after_the_cool_down(setup, clock):
    client, gateway, flaky, healthy = setup
    for number in range(5):
        deliver(client, f"e{number}")
    gateway.dispatcher.run_until_idle()
    clock.advance(31)
    gateway.dispatcher.run_until_idle()
    assert len(flaky.calls) == 4  # the probe failed: paused again
    assert gateway.dispatcher.breaker.state("tests.test_breaker.Flaky") == "open"
    clock.advance(31)
    flaky.broken = False
    gateway.dispatcher.run_until_idle()
    assert sorted(set(flaky.calls)) == ["e0", "e1", "e2", "e3", "e4"]
    assert gateway.dispatcher.breaker.state("tests.test_breaker.Flaky") == "closed"
    assert gateway.store.counts_by_status() == {"done": 5}


def test_paused_waits_are_not_counted_as_attempts(setup, clock):
    client, gateway, flaky, _ = setup
    for number in range(4):
        deliver(client, f"e{number}")
    gateway.dispatcher.run_until_idle()
    for _ in range(3):
        clock.advance(9)  # still inside the cool-down
        gateway.dispatcher.run_until_idle()
    flaky.broken = False
    clock.advance(10)
    gateway.dispatcher.run_until_idle()
    assert runs_of(gateway, "e3")["Flaky"].attempts == 1


def test_run_past_the_time_budget_is_counted_and_trips_the_breaker(make_app, connect):
    app = make_app(GATEWAY_BREAKER_FAILURES="2", GATEWAY_HANDLER_BUDGET_SECONDS="0")
    gateway = app.extensions["gateway"]
    calls: list[str] = []

    def slow(source: str, event: Any) -> None:
        calls.append(event.id)

    connect("ping", slow)
    name = f"{slow.__module__}.{slow.__qualname__}"
    before = sample("gateway_handler_over_budget_total", name)
    client = app.test_client()
    for number in range(3):
        deliver(client, f"e{number}")
    gateway.dispatcher.run_until_idle()
    assert calls == ["e0", "e1"]
    assert sample("gateway_handler_over_budget_total", name) - before == 2
    assert runs_of(gateway, "e0")["slow"].status == "ok"  # its result stands
    assert gateway.store.find_event("e2").status == "pending"


def test_do_not_retry_verdicts_do_not_pause_the_handler(make_app, connect):
    app = make_app(GATEWAY_BREAKER_FAILURES="2")
    gateway = app.extensions["gateway"]
    calls: list[str] = []

    def picky(source: str, event: Any) -> None:
        calls.append(event.id)
        raise DoNotRetry("not for me")

    connect("ping", picky)
    client = app.test_client()
    for number in range(4):
        deliver(client, f"e{number}")
    gateway.dispatcher.run_until_idle()
    assert calls == ["e0", "e1", "e2", "e3"]


def test_breaker_with_threshold_zero_never_pauses(clock):
    breaker = CircuitBreaker(0, 30, clock=clock)
    for _ in range(100):
        breaker.record_failure("h")
    assert breaker.allow("h")


def test_success_resets_the_consecutive_count(clock):
    breaker = CircuitBreaker(3, 30, clock=clock)
    for _ in range(2):
        breaker.record_failure("h")
    breaker.record_success("h")
    for _ in range(2):
        breaker.record_failure("h")
    assert breaker.state("h") == "closed"


def test_half_open_lets_exactly_one_probe_through(clock):
    breaker = CircuitBreaker(1, 30, clock=clock)
    breaker.record_failure("h")
    assert not breaker.allow("h")
    clock.advance(30)
    assert [breaker.allow("h") for _ in range(3)] == [True, False, False]
    breaker.record_success("h")
    assert breaker.allow("h")
