"""Physical resource names: everything an environment deploys carries the environment as its prefix."""

from __future__ import annotations

from dataclasses import dataclass

from infra.registry.limits import Environment
from infra.registry.model import FIFO_SUFFIX


@dataclass(frozen=True, slots=True)
class ResourceNames:
    """Names producers, operators and alarms can rely on: prod-orders, prod-order-created-to-ledger."""

    environment: Environment

    def name(self, *parts: str) -> str:
        return "-".join((self.environment, *parts))

    def queue_name(self, *parts: str, fifo: bool) -> str:
        # SQS wants the .fifo suffix at the very end, after every other part.
        return self.name(*parts) + (FIFO_SUFFIX if fifo else "")
