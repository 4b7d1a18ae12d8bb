"""The AWS the benchmark's function talks to: moto in server mode on 127.0.0.1, in its own process so its
request handling is not charged to the measured one (as DynamoDB's is not charged to a Lambda function).

Run as `python -m bench.aws_process`; it prints `READY <port>` once it listens, and stops when its parent
closes its stdin (or dies), or after a bounded lifetime.
"""

from __future__ import annotations

import logging
import threading

from moto.server import ThreadedMotoServer

from bench.child_process import LOOPBACK, MAX_LIFETIME_SECONDS, ChildProcess, announce_ready, stop_when_parent_leaves


class AwsProcess(ChildProcess):
    """moto in its own interpreter, always stopped (use as a context manager)."""

    def __init__(self) -> None:
        super().__init__("bench.aws_process", "benchmark AWS (moto)")

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def _serve() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log on the pipe
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    stopped = threading.Event()
    stop_when_parent_leaves(stopped.set)
    announce_ready(server.get_host_and_port()[1])
    stopped.wait(MAX_LIFETIME_SECONDS)
    server.stop()


if __name__ == "__main__":
    _serve()
