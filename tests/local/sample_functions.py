"""Tiny Lambda handlers the worker tests run in real worker processes (named by FunctionSpec.handler)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

# Module state survives between invocations of one warm worker, and only that long.
COLD_STARTS_OF_THIS_WORKER = 1
_invocations_served = 0


def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns what the handler saw: the event, the context, its environment and its worker."""
    global _invocations_served
    _invocations_served += 1
    return {
        "event": event,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "aws_request_id": context.aws_request_id,
        "remaining_millis": context.get_remaining_time_in_millis(),
        "greeting": os.environ.get("GREETING"),
        "aws_endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
        "pid": os.getpid(),
        "invocations_served": _invocations_served,
    }


def fail(event: dict[str, Any], context: Any) -> None:
    raise ValueError(f"cannot handle {event.get('name', 'this event')}")


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sleeps event["seconds"], printing a line first; answers with its pid and when it ran."""
    started = time.time()
    print(f"sleeping {event['seconds']} s", flush=True)
    time.sleep(float(event["seconds"]))
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


def emit_metrics(event: dict[str, Any], context: Any) -> None:
    """Prints a log line, a line on stderr and an EMF document like Powertools' Metrics does."""
    print("delivering the batch")
    print("a warning on stderr", file=sys.stderr)
    emf = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": "CallbackDispatcher",
                    "Dimensions": [["service"]],
                    "Metrics": [
                        {"Name": "Delivered", "Unit": "Count"},
                        {"Name": "Retried", "Unit": "Count"},
                        {"Name": "DeliveryLatency", "Unit": "Milliseconds"},
                    ],
                }
            ],
        },
        "service": "callback-dispatcher",
        "Delivered": [event["delivered"], 1],
        "Retried": 2,
        "DeliveryLatency": [12.5, 30.0],
    }
    print(json.dumps(emf))
