"""Benchmark the gateway against its floor: ``python -m bench.run``.

Three servers run one after the other under the repository's
``gunicorn.conf.py``, each on a fresh store, on 127.0.0.1 only:

- ``floor``: bench/floor_app.py, verify + parse + 202 and nothing else;
- ``sqlite``: the gateway, SQLite store, in-memory limiter, no-op handler;
- ``postgres``: the gateway, PostgreSQL store (a fresh schema, dropped
  afterwards), Redis limiter, no-op handler.

Each is warmed up, then driven to its peak by wrk with pre-signed,
unique deliveries; its workers' memory is read after the load. The two
gateways are then restarted on a fresh store and driven at half their
peak by a fixed-rate Python driver, which measures acknowledgement and
send-to-handler (dispatch) latency. The figures, the ratios to the floor
and the issue's targets are printed and written as JSON. The run fails
(exit status 1) if any answer was not 2xx or a delivery was repeated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import servers
from .deliveries import write_file
from .driver import drive, percentile, wait_for_dispatch

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "deliveries.lua"
RESULTS_DIR = BENCH_DIR / "results"
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# High enough that the limiter counts every delivery but never refuses one.
# The odd figure also gives the Redis keys a name no other user shares;
# they expire one second after the run.
UNLIMITED_RATE = "987654 per second"
TARGETS = {
    "sqlite_ratio_min": 0.70,
    "postgres_ratio_min": 0.50,
    "ack_p99_ms_max": 25.0,
    "dispatch_p50_ms_max": 50.0,
    "dispatch_p99_ms_max": 250.0,
    "rss_mb_max": 80.0,
}
TARGET_NAMES = ("floor", "sqlite", "postgres")
DISPATCH_WAIT_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 when every answer was 2xx."""
    options = _parse(argv)
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "wrk is not installed: apt-get update && apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    only = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = set(only) - set(TARGET_NAMES)
    if unknown:
        print(f"unknown target(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    work_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    secret = "bench-" + secrets.token_hex(16)
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {
            "gunicorn_config": "gunicorn.conf.py",
            "workers": servers.configured_workers(),
            "threads_per_worker": servers.configured_threads(),
            "wrk_threads": options.wrk_threads,
            "wrk_connections": options.connections,
            "seconds": options.seconds,
            "warmup_seconds": options.warmup,
            "driver_seconds": options.driver_seconds,
            "driver_fraction_of_peak": options.fraction,
            "rate_limit": UNLIMITED_RATE,
        },
        "runs": {},
        "problems": [],
    }
    started = time.monotonic()
    try:
        warm_file = write_file(
            work_dir / "warm.txt",
            secret,
            math.ceil(options.max_rate * options.warmup) + 100,
            "warm",
        )
        main_file = write_file(
            work_dir / "main.txt",
            secret,
            math.ceil(options.max_rate * options.seconds) + 100,
            "main",
        )
        for name in TARGET_NAMES:
            if name not in only:
                continue
            if name == "postgres" and not _services_up(report):
                continue
            report["runs"][name] = _run_target(
                name, options, wrk, work_dir, secret, warm_file, main_file, report
            )
    finally:
        if not options.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    report["ratios"] = _ratios(report["runs"])
    report["targets"] = _judge(report)
    output = Path(options.output) if options.output else _result_path()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    _print(report, output)
    return 1 if report["problems"] else 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration")
    parser.add_argument("--warmup", type=float, default=3.0, help="wrk warm-up")
    parser.add_argument(
        "--driver-seconds", type=float, default=15.0, help="fixed-rate duration"
    )
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="fixed rate as part of peak"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument(
        "--max-rate",
        type=float,
        default=10000.0,
        help="deliveries prepared per second of load (must exceed any peak)",
    )
    parser.add_argument(
        "--only", default=",".join(TARGET_NAMES), help="floor,sqlite,postgres"
    )
    parser.add_argument("--output", help="result file (default bench/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke run: proves the harness, measures nothing",
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.seconds, options.warmup, options.driver_seconds = 1.0, 0.5, 1.0
        options.max_rate = 8000.0
    return options


def _run_target(
    name: str,
    options: argparse.Namespace,
    wrk: str,
    work_dir: Path,
    secret: str,
    warm_file: Path,
    main_file: Path,
    report: dict[str, Any],
) -> dict[str, Any]:
    run: dict[str, Any] = {}
    print(f"[{name}] starting", flush=True)
    with _served(name, "peak", work_dir, secret) as server:
        run["load_average_before"] = _load_average()
        url = server.base_url + "/api/webhooks/integration"
        _wrk(wrk, url, warm_file, options.warmup, options)
        peak = _wrk(wrk, url, main_file, options.seconds, options)
        run["rss_mb_per_worker"] = server.worker_rss_mb()
        run["peak"] = peak
        _check_wrk(name, peak, report)
    print(
        f"[{name}] peak {peak['requests_per_second']:.0f} req/s,"
        f" p50 {peak['p50_ms']:.1f} ms, p99 {peak['p99_ms']:.1f} ms",
        flush=True,
    )
    if name == "floor":
        return run
    rate = max(1.0, peak["requests_per_second"] * options.fraction)
    with _served(name, "steady", work_dir, secret) as server:
        run["load_average_before_steady"] = _load_average()
        url = server.base_url + "/api/webhooks/integration"
        result = drive(
            url,
            secret,
            rate=rate,
            seconds=options.driver_seconds,
            prefix=f"steady_{name}",
        )
        dispatch = wait_for_dispatch(
            server.extra["dispatch_log"], result.accepted, DISPATCH_WAIT_SECONDS
        )
    run["steady"] = _steady_summary(result, dispatch)
    if result.non_2xx or result.errors:
        report["problems"].append(
            f"{name}: the fixed-rate driver got {result.non_2xx} non-2xx answers"
            f" and {result.errors} connection errors"
        )
    if result.accepted != result.sent:
        report["problems"].append(
            f"{name}: {result.sent - result.accepted} fixed-rate deliveries"
            " were not answered 202"
        )
    if len(dispatch) < result.accepted:
        report["problems"].append(
            f"{name}: only {len(dispatch)} of {result.accepted} events reached"
            f" the handler within {DISPATCH_WAIT_SECONDS:.0f} s"
        )
    steady = run["steady"]
    print(
        f"[{name}] steady {steady['rate_achieved']:.0f} req/s,"
        f" ack p99 {_show(steady['ack_p99_ms'])} ms,"
        f" dispatch p50 {_show(steady['dispatch_p50_ms'])} ms"
        f" p99 {_show(steady['dispatch_p99_ms'])} ms",
        flush=True,
    )
    return run


@contextmanager
def _served(
    name: str, phase: str, work_dir: Path, secret: str
) -> Iterator[servers.Server]:
    """Serve one target on a fresh store for the duration of the block."""
    label = f"{name}-{phase}"
    folder = work_dir / label
    folder.mkdir()
    schema: str | None = None
    if name == "floor":
        app, ready = "bench.floor_app:app", "/healthz"
        environment = {"BENCH_SECRET": secret}
    else:
        app, ready = "app:app", "/readyz"
        environment = {
            "GATEWAY_ENV": "production",
            "INTEGRATION_SECRET_KEY": secret,
            "GATEWAY_HANDLERS": "bench.noop_handler",
            "GATEWAY_DATA_DIR": str(folder),
            "GATEWAY_DATABASE_URL": f"sqlite:///{folder / 'events.db'}",
            "RATELIMIT_DEFAULT": UNLIMITED_RATE,
            "BENCH_DISPATCH_LOG": str(folder / "dispatch.log"),
        }
        if name == "postgres":
            schema = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
            _postgres(f"CREATE SCHEMA {schema}")
            environment["GATEWAY_DATABASE_URL"] = (
                f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
            )
            environment["RATELIMIT_STORAGE_URI"] = REDIS_URL
    server: servers.Server | None = None
    try:
        server = servers.start(label, app, environment, work_dir, ready_path=ready)
        server.extra["dispatch_log"] = folder / "dispatch.log"
        yield server
    finally:
        if server is not None:
            server.stop()
        if schema is not None:
            _postgres(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _wrk(
    wrk: str, url: str, data: Path, seconds: float, options: argparse.Namespace
) -> dict[str, Any]:
    threads = options.wrk_threads
    command = [
        wrk,
        f"-t{threads}",
        f"-c{options.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(data),
        str(threads),
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    match = re.search(r"^BENCH_RESULT (.*)$", finished.stdout, re.MULTILINE)
    if finished.returncode != 0 or match is None:
        raise RuntimeError(
            f"wrk failed ({finished.returncode}):\n{finished.stdout}\n{finished.stderr}"
        )
    raw = json.loads(match.group(1))
    latency = raw["latency_us"]
    seconds_measured = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds_measured, 3),
        "requests_per_second": round(raw["requests"] / seconds_measured, 1),
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "p999_ms": latency["p999"] / 1000,
        "max_ms": latency["max"] / 1000,
        "mean_ms": round(latency["mean"] / 1000, 3),
        "answers_2xx": raw["answers_2xx"],
        "answers_200_duplicate": raw["answers_200"],
        "non_2xx": raw["non_2xx"],
        "non_2xx_statuses": raw["non_2xx_statuses"],
        "exhausted_threads": raw["exhausted_threads"],
        "socket_errors": raw["socket_errors"],
    }


def _check_wrk(name: str, peak: dict[str, Any], report: dict[str, Any]) -> None:
    problems = report["problems"]
    if peak["non_2xx"]:
        problems.append(
            f"{name}: {peak['non_2xx']} answers were not 2xx {peak['non_2xx_statuses']}"
        )
    if peak["exhausted_threads"]:
        problems.append(f"{name}: wrk ran out of unique deliveries; raise --max-rate")
    if name != "floor" and peak["answers_200_duplicate"]:
        problems.append(
            f"{name}: {peak['answers_200_duplicate']} deliveries were answered"
            " as duplicates"
        )
    errors = peak["socket_errors"]
    if any(errors.values()):
        problems.append(f"{name}: wrk saw socket errors {errors}")


def _steady_summary(result: Any, dispatch: list[float]) -> dict[str, Any]:
    def ms(values: list[float], fraction: float) -> float | None:
        value = percentile(values, fraction)
        return None if value is None else round(value * 1000, 2)

    return {
        "rate_asked": round(result.rate_asked, 1),
        "rate_achieved": round(result.rate_achieved, 1),
        "seconds": result.seconds,
        "sent": result.sent,
        "accepted": result.accepted,
        "non_2xx": result.non_2xx,
        "connection_errors": result.errors,
        "ack_p50_ms": ms(result.ack_seconds, 0.50),
        "ack_p99_ms": ms(result.ack_seconds, 0.99),
        "ack_max_ms": ms(result.ack_seconds, 1.0),
        "driver_lag_p99_ms": ms(result.lag_seconds, 0.99),
        "dispatched": len(dispatch),
        "dispatch_p50_ms": ms(dispatch, 0.50),
        "dispatch_p99_ms": ms(dispatch, 0.99),
        "dispatch_max_ms": ms(dispatch, 1.0),
    }


def _ratios(runs: dict[str, Any]) -> dict[str, float | None]:
    floor = runs.get("floor", {}).get("peak", {}).get("requests_per_second")
    ratios: dict[str, float | None] = {}
    for name in ("sqlite", "postgres"):
        peak = runs.get(name, {}).get("peak", {}).get("requests_per_second")
        ratios[f"{name}/floor"] = round(peak / floor, 3) if floor and peak else None
    return ratios


def _judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    runs, ratios = report["runs"], report["ratios"]
    steady = runs.get("sqlite", {}).get("steady", {})
    rss = [
        size
        for name in ("sqlite", "postgres")
        for size in runs.get(name, {}).get("rss_mb_per_worker", [])
    ]
    checks = [
        ("(b) sqlite / floor throughput", ratios.get("sqlite/floor"), ">=", 0.70),
        ("(c) postgres / floor throughput", ratios.get("postgres/floor"), ">=", 0.50),
        ("(b) ack p99 at half peak, ms", steady.get("ack_p99_ms"), "<", 25.0),
        ("(b) dispatch p50 at half peak, ms", steady.get("dispatch_p50_ms"), "<", 50.0),
        (
            "(b) dispatch p99 at half peak, ms",
            steady.get("dispatch_p99_ms"),
            "<",
            250.0,
        ),
        ("RSS per worker, MiB (largest)", max(rss) if rss else None, "<", 80.0),
    ]
    judged = []
    for label, value, relation, target in checks:
        if value is None:
            verdict = "not measured"
        elif (value >= target) if relation == ">=" else (value < target):
            verdict = "met"
        else:
            verdict = "missed"
        judged.append(
            {
                "target": label,
                "relation": relation,
                "goal": target,
                "value": value,
                "verdict": verdict,
            }
        )
    return judged


def _print(report: dict[str, Any], output: Path) -> None:
    print()
    print(f"{'target':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  RSS/worker MiB")
    for name, run in report["runs"].items():
        peak = run["peak"]
        print(
            f"{name:<10} {peak['requests_per_second']:>9.0f}"
            f" {peak['p50_ms']:>8.1f} {peak['p99_ms']:>8.1f}"
            f"  {run['rss_mb_per_worker']}"
        )
    for name, ratio in report["ratios"].items():
        print(f"ratio {name}: {_show(ratio)}")
    print()
    for check in report["targets"]:
        print(
            f"{check['verdict']:<13} {check['target']}: {_show(check['value'])}"
            f" (goal {check['relation']} {check['goal']})"
        )
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"\nload average at start: {report['machine']['load_average']}")
    print(f"results written to {output}")


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _services_up(report: dict[str, Any]) -> bool:
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not _reachable("127.0.0.1", port)
    ]
    if missing:
        report["problems"].append(
            f"postgres: skipped, {' and '.join(missing)} not reachable on 127.0.0.1"
        )
    return not missing


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _postgres(statement: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as db:
        db.execute(statement)  # type: ignore[arg-type]


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": _load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        finished = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return finished.stdout.strip() or None


def _result_path() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return RESULTS_DIR / f"{stamp}.json"


if __name__ == "__main__":
    sys.exit(main())
