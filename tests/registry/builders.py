"""Registry documents for tests: a small valid registry that each test bends in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.registry import RegistryError, load_registry

Document = dict[str, Any]

SOURCES: Document = {
    "streams": [{"name": "orders"}],
    "queues": [{"name": "billing-callbacks"}, {"name": "refunds.fifo"}],
}


def stream_subscription(**fields: Any) -> Document:
    return {"name": "hook", "source": "stream/orders", "endpoint": "https://hooks.example.com/orders", **fields}


def queue_subscription(**fields: Any) -> Document:
    return stream_subscription(source="queue/billing-callbacks", **fields)


def fifo_subscription(**fields: Any) -> Document:
    return stream_subscription(source="queue/refunds.fifo", **fields)


def team(name: str, *subscriptions: Document) -> Document:
    return {"team": name, "alerts_email": f"{name}@example.com", "subscriptions": list(subscriptions)}


def problems_in(root: Path) -> list[str]:
    """Every error the validator reports for the registry under `root`, as the user reads them."""
    with pytest.raises(RegistryError) as raised:
        load_registry(root, "prod")
    return [str(problem) for problem in raised.value.problems]
