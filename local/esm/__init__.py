"""Event source mappings, emulated: the pollers that feed each consumer function from Kinesis or SQS the way
Lambda's event source mappings do, over the local AWS's APIs.

    poller = create_poller(consumer, FunctionRunner(consumer.function), endpoint_url=..., region=..., stats=...)
    task = asyncio.create_task(poller.run())   # cancel the task to stop it
"""

from __future__ import annotations

from local.esm.base import BatchVerdict, Invoker, judge
from local.esm.filters import FilterPatternError, matches_any
from local.esm.kinesis import KinesisPoller
from local.esm.sqs import SqsPoller
from local.spec import ConsumerSpec, ConsumerStats, KinesisMappingSpec

Poller = KinesisPoller | SqsPoller

__all__ = [
    "BatchVerdict",
    "FilterPatternError",
    "Invoker",
    "KinesisPoller",
    "Poller",
    "SqsPoller",
    "create_poller",
    "judge",
    "matches_any",
]


def create_poller(
    consumer: ConsumerSpec,
    function: Invoker,
    *,
    endpoint_url: str,
    region: str,
    stats: ConsumerStats | None = None,
    checkpoint_table: str | None = None,
) -> Poller:
    """The poller for the consumer's mapping, invoking `function` and counting into `stats`; a Kinesis poller
    keeps its checkpoints in `checkpoint_table` (local/esm/checkpoints.py) when given one."""
    if isinstance(consumer.mapping, KinesisMappingSpec):
        return KinesisPoller(
            consumer, function, endpoint_url=endpoint_url, region=region, stats=stats, checkpoint_table=checkpoint_table
        )
    return SqsPoller(consumer, function, endpoint_url=endpoint_url, region=region, stats=stats)
