"""A smoke run of the benchmark harness, so it keeps working.

It proves the harness end to end (servers, wrk, the fixed-rate driver,
the result file) in a few seconds; it asserts no figure, only that every
answer was 2xx and every phase reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.bench
@pytest.mark.server
def test_benchmark_harness_runs_end_to_end(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    output = tmp_path / "result.json"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--only",
            "floor,sqlite",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(output.read_text())
    assert report["problems"] == []
    assert report["runs"]["floor"]["peak"]["answers_2xx"] > 0
    assert report["runs"]["sqlite"]["peak"]["answers_2xx"] > 0
    steady = report["runs"]["sqlite"]["steady"]
    assert steady["dispatched"] == steady["accepted"] > 0
