"""make soak's runner: the load it makes is always stopped, and one unclean run fails the soak."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from local import soak

# Stands in for `dispatcher demo --json`: clean without faults; with them, one event lost and exit 1.
FAKE_DEMO = (
    "import json, sys\n"
    "faults = '--fail-rate' in sys.argv\n"
    "print(json.dumps({'delivered': 1999 if faults else 2000, 'lost': int(faults), 'out_of_order': 0,\n"
    "                  'duplicates_absorbed': 3, 'max_held_keys': 2 * faults, 'max_iterator_age_ms': 250.4,\n"
    "                  'ok': not faults}))\n"
    "sys.exit(1 if faults else 0)\n"
)


def test_cpu_load_is_stopped_even_when_the_body_fails() -> None:
    # Given busy loops started for a body that raises
    loops: list[subprocess.Popen[bytes]] = []
    running: list[bool] = []

    def failing_body() -> None:
        with soak.cpu_load(2) as started:
            loops.extend(started)
            running.extend(loop.poll() is None for loop in started)
            raise RuntimeError("the soak broke")

    # When the body fails
    with pytest.raises(RuntimeError):
        failing_body()
    # Then they ran during the body and are all gone after it
    assert running == [True, True]
    assert all(loop.returncode is not None for loop in loops)


def test_one_unclean_run_fails_the_soak_and_each_run_gets_a_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a demo that is clean without faults and loses an event with them
    monkeypatch.setattr(soak, "DEMO_COMMAND", (sys.executable, "-c", FAKE_DEMO))
    output = io.StringIO()
    # When the soak runs it three times
    clean = soak.soak(3, output)
    # Then runs alternate without and with faults, each reported, and the soak fails naming the unclean run
    lines = output.getvalue().splitlines()
    assert clean is False
    assert [line.split(" seconds=")[0] for line in lines[:3]] == [
        "run 1: faults=off delivered=2000 lost=0 out_of_order=0 duplicates=3 held_keys=0 iterator_age_ms=250 exit=0",
        "run 2: faults=on delivered=1999 lost=1 out_of_order=0 duplicates=3 held_keys=2 iterator_age_ms=250 exit=1",
        "run 3: faults=off delivered=2000 lost=0 out_of_order=0 duplicates=3 held_keys=0 iterator_age_ms=250 exit=0",
    ]
    assert lines[3].startswith("soak: 2/3 runs clean")
    assert lines[3].endswith("FAILED runs: 2")


def test_a_demo_that_prints_no_report_is_not_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a demo that crashes before printing its report, though it exits 0
    monkeypatch.setattr(soak, "DEMO_COMMAND", (sys.executable, "-c", "print('Traceback ...')"))
    # When it runs once
    result = soak.run_demo(1, faults=False)
    # Then the run is not clean, and its line says what is missing
    assert (result.clean, result.report) == (False, None)
    assert "delivered=- lost=-" in result.line()


def test_the_number_of_runs_must_be_a_positive_whole_number(capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("0", "five"):
        with pytest.raises(SystemExit):
            soak.main(["--runs", text])
        assert "the number of runs must be" in capsys.readouterr().err
