"""A bounded, fixed-rate load driver for latencies below saturation.

wrk measures the peak; this driver sends deliveries at a steady rate for
a fixed time (open loop: each send is scheduled at ``start + i / rate``
whatever happened before), so acknowledgement and dispatch latencies
are measured where a real provider's traffic sits, below the peak.
Each delivery carries ``sent_at`` so the no-op handler can note how long
it waited between being sent and being dispatched.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .deliveries import SIGNATURE_HEADER, body, sign

REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass
class DriveResult:
    """What one fixed-rate drive saw, latencies in seconds."""

    rate_asked: float
    seconds: float
    sent: int = 0
    accepted: int = 0
    non_2xx: int = 0
    errors: int = 0
    elapsed_seconds: float = 0.0
    ack_seconds: list[float] = field(default_factory=list)
    lag_seconds: list[float] = field(default_factory=list)

    @property
    def rate_achieved(self) -> float:
        """Deliveries answered per second over the whole drive."""
        return self.sent / self.elapsed_seconds if self.elapsed_seconds else 0.0


def drive(
    url: str,
    secret: str,
    *,
    rate: float,
    seconds: float,
    prefix: str,
    concurrency: int = 16,
) -> DriveResult:
    """Send ``rate * seconds`` signed, unique deliveries at a fixed rate.

    ``ack_seconds`` holds each answer's latency from the moment it was
    sent; ``lag_seconds`` how late the driver sent it against its
    schedule (a large lag means the driver, not the server, fell behind).
    """
    total = max(1, int(rate * seconds))
    result = DriveResult(rate_asked=rate, seconds=seconds)
    numbers = itertools.count()
    lock = threading.Lock()
    start = time.perf_counter() + 0.1

    def work() -> None:
        with requests.Session() as session:
            while True:
                index = next(numbers)
                if index >= total:
                    return
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent_at = time.time()
                began = time.perf_counter()
                payload = body(f"evt_{prefix}_{index:07d}", sent_at=sent_at)
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(secret, payload),
                }
                try:
                    answer = session.post(
                        url,
                        data=payload,
                        headers=headers,
                        timeout=REQUEST_TIMEOUT_SECONDS,
                    )
                    status: int | None = answer.status_code
                except requests.RequestException:
                    status = None
                ended = time.perf_counter()
                with lock:
                    result.sent += 1
                    result.lag_seconds.append(max(0.0, began - due))
                    if status is None:
                        result.errors += 1
                    elif 200 <= status < 300:
                        result.ack_seconds.append(ended - began)
                        if status == 202:
                            result.accepted += 1
                    else:
                        result.non_2xx += 1

    workers = [
        threading.Thread(target=work, name=f"driver-{number}", daemon=True)
        for number in range(concurrency)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    result.elapsed_seconds = time.perf_counter() - start
    return result


def wait_for_dispatch(
    log_path: Path, expected: int, timeout_seconds: float
) -> list[float]:
    """Poll the no-op handler's file until ``expected`` events are noted.

    Returns the send-to-handler latencies found (fewer than expected if
    the timeout passed first), one per event id (a handler retried after
    a crash would note an event twice; the first note counts).
    """
    deadline = time.monotonic() + timeout_seconds
    latencies: dict[str, float] = {}
    while True:
        latencies = _read_dispatch_log(log_path)
        if len(latencies) >= expected or time.monotonic() > deadline:
            return list(latencies.values())
        time.sleep(0.2)


def _read_dispatch_log(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return found
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] not in found:
            found[parts[0]] = float(parts[1])
    return found


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
