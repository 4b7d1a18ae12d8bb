"""The main job, end to end: the demo path with faults switched on loses nothing and keeps order."""

from __future__ import annotations

import json

import pytest
from moto.moto_api._internal.models import moto_api_backend

from cli.main import main

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_embedded_aws() -> None:
    """moto's state is shared by every server of the process: each demo creates its streams and queues afresh."""
    moto_api_backend.reset()


def test_demo_with_faults_loses_nothing_and_keeps_order(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an endpoint that fails, answers late, and a function that gets killed mid-batch
    arguments = [
        "demo",
        "--events",
        "240",
        "--fail-rate",
        "0.1",
        "--timeout-rate",
        "0.03",
        "--crash-rate",
        "0.05",
        "--poison-rate",
        "0.03",
        "--seed",
        "7",
        "--json",
    ]
    # When the demo runs
    exit_code = main(arguments)
    report = json.loads(capsys.readouterr().out)
    # Then every event reached the receiver or was set aside with its payload, in order where promised
    assert report["produced"] == 240
    assert report["lost"] == 0
    assert report["out_of_order"] == 0
    assert report["stale_by_sequence"] == 0
    assert report["payload_mismatches"] == 0
    assert report["delivered"] + report["parked"] == 240
    assert report["parked"] > 0  # the poison events, refused for good, are parked rather than retried forever
    assert report["retries"] > 0
    assert report["ok"] is True
    assert exit_code == 0


def test_demo_with_a_key_outage_delivers_every_key_and_reports_its_lanes(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an endpoint that refuses a quarter of the keys for the first seconds of traffic (no crashes: a lane
    # invocation killed mid-batch would wait out the lane's visibility timeout, minutes, as on AWS)
    arguments = ["demo", "--events", "160", "--key-outage-rate", "0.25", "--outage-seconds", "3", "--seed", "5"]
    # When the demo runs
    exit_code = main([*arguments, "--json"])
    report = json.loads(capsys.readouterr().out)
    # Then every event reached the receiver or was parked (the poison ones), in order where promised
    assert (report["lost"], report["out_of_order"], report["stale_by_sequence"]) == (0, 0, 0)
    assert report["delivered"] + report["parked"] == 160
    assert report["ok"] is True
    assert exit_code == 0
    # And the report tells how the retry lanes did, beside max IteratorAge
    assert {"key_outage_refusals", "max_held_keys", "max_oldest_in_lane_seconds", "max_iterator_age_ms"} <= set(report)
