"""Event source mappings, emulated: the pollers that feed each consumer function from Kinesis or SQS the way
Lambda's event source mappings do, over the local AWS's APIs.

    poller = create_poller(consumer, FunctionRunner(consumer.function), endpoint_url=..., region=..., stats=...)
    task = asyncio.create_task(poller.run())   # cancel the task to stop it
"""

from __future__ import annotations

from typing import Unpack

from local.esm.base import BatchVerdict, Invoker, PollerOptions, judge
from local.esm.filters import FilterPatternError, matches_any
from local.esm.kinesis import KinesisPoller
from local.esm.sqs import SqsPoller
from local.spec import ConsumerSpec, KinesisMappingSpec

Poller = KinesisPoller | SqsPoller

__all__ = [
    "BatchVerdict",
    "FilterPatternError",
    "Invoker",
    "KinesisPoller",
    "Poller",
    "PollerOptions",
    "SqsPoller",
    "create_poller",
    "judge",
    "matches_any",
]


def create_poller(
    consumer: ConsumerSpec, function: Invoker, *, checkpoint_table: str | None = None, **options: Unpack[PollerOptions]
) -> Poller:
    """The poller for the consumer's mapping, invoking `function` (see PollerOptions for the rest); a Kinesis
    poller keeps its checkpoints in `checkpoint_table` (local/esm/checkpoints.py) when given one."""
    if isinstance(consumer.mapping, KinesisMappingSpec):
        return KinesisPoller(consumer, function, checkpoint_table=checkpoint_table, **options)
    return SqsPoller(consumer, function, **options)
