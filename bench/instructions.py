"""`python -m bench --instructions`: figure (b) counted in CPU instructions instead of timed, so that it hardly
moves with the machine's load. On these shared machines the timed (b) of the same code spreads from about 0.50 to
0.85; on an idle machine an instruction count repeats within 1%. With the CPUs busy the handler's count rises
about 2% (a slower endpoint leaves the event loop more rounds per record): count on an idle machine.

Each subject runs in its own interpreter under valgrind's callgrind (the endpoint and moto are its children,
not counted): the handler as Lambda calls it, the bare aiohttp loop of (b), and that loop sending the contract's
signed headers. Each is warmed up as (b) warms them up (the handler's first invocation also sets the collector
as in Lambda), its event or bodies are built, and only then is counting switched on, for RECORDS records
against the endpoint that answers at once. Counting leaves out what cache misses and branch mispredictions
cost, so it is beside the timed figure, not instead of it. About a minute: not part of `make bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import workload
from bench.child_process import REPO_ROOT
from bench.report import Figure, emit, progress, section

RECORDS = 2000
WARM_UP_RECORDS = 500
SUBJECTS = ("handler", "bare", "contract")
COLLECTED = re.compile(r"Collected : (\d+)")
SUBJECT_TIMEOUT_SECONDS = 1800.0


def run() -> list[Figure]:
    section(
        f"(b) in CPU instructions per record (callgrind), {RECORDS} records after a warm-up, endpoint answers "
        f"at once, {workload.MAX_IN_FLIGHT} in flight"
    )
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    progress(f"the {len(SUBJECTS)} subjects under callgrind side by side (about a minute)")
    with ThreadPoolExecutor(len(SUBJECTS)) as pool:
        counts = dict(zip(SUBJECTS, pool.map(lambda subject: _count(valgrind, subject), SUBJECTS), strict=True))
    per_record = {subject: count / RECORDS for subject, count in counts.items()}
    handler, bare, contract = per_record["handler"], per_record["bare"], per_record["contract"]
    return [
        emit(
            Figure(
                "(b) by instructions: bare loop / handler, per record",
                f"{bare / handler:.2f}",
                detail=f"{handler / 1000:,.0f}k vs {bare / 1000:,.0f}k instructions a record; the timed (b) judges",
            )
        ),
        emit(
            Figure(
                "(b) by instructions: bare loop with the contract's headers",
                f"{bare / contract:.2f}",
                detail=f"of the bare loop's; {contract / 1000:,.0f}k instructions a request",
            )
        ),
    ]


def parse_collected(valgrind_output: str) -> int:
    """The instructions callgrind counted, from what it printed at exit."""
    found = COLLECTED.findall(valgrind_output)
    if not found:
        raise RuntimeError(f"callgrind printed no instruction count:\n{valgrind_output[-2000:]}")
    return int(found[-1])


def _count(valgrind: str, subject: str) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        completed = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--instr-atstart=no",  # counting starts when the subject says so, after its warm-up
                f"--callgrind-out-file={Path(scratch) / 'callgrind.out'}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--subject",
                subject,
            ],
            cwd=REPO_ROOT,
            env=os.environ | {"PYTHONHASHSEED": "0"},  # the same dictionaries in every run
            capture_output=True,
            text=True,
            timeout=SUBJECT_TIMEOUT_SECONDS,
            check=False,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{subject} under callgrind failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return parse_collected(completed.stderr)


def _counting(on: bool) -> None:
    """Switch callgrind's counting for this process; returns once callgrind has."""
    switch = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True)


def _subject(subject: str) -> None:
    """In the process under callgrind: warm up, build the input, count one run of RECORDS records."""
    from bench.aws_process import AwsProcess
    from bench.endpoint import EndpointProcess
    from bench.http_figures import Positions, bare_aiohttp, open_session
    from bench.lambda_function import LambdaFunction
    from dispatcher.records import parse_event

    with AwsProcess() as aws, EndpointProcess() as endpoint, LambdaFunction(aws, endpoint.url(0)) as function:
        url = endpoint.url(0)
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(open_session())
        positions = Positions()

        def runner(records: int) -> Callable[[], object]:
            event = positions.event(records)
            if subject == "handler":
                return lambda: function.invoke(event)
            bodies = workload.event_bodies(event)
            headers = workload.contract_headers(workload.subscription(url), parse_event(event))
            sent = headers if subject == "contract" else None
            return lambda: loop.run_until_complete(bare_aiohttp(session, url, bodies, sent))

        try:
            function.invoke(positions.event(WARM_UP_RECORDS))  # as in (b): the collector set as in Lambda
            for _ in range(2):
                runner(WARM_UP_RECORDS)()
            measured = runner(RECORDS)
            _counting(on=True)
            measured()
            _counting(on=False)
        finally:
            loop.run_until_complete(session.close())
            loop.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--subject", choices=SUBJECTS, required=True)
    _subject(parser.parse_args().subject)
