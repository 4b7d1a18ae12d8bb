"""The producer: puts JSON events onto a Kinesis stream or an SQS queue, for services and the CLI.

    from producer import KinesisProducer
    result = KinesisProducer("prod-orders", partition_key_field="order_id").send(events)

Records AWS refuses inside a successful response are re-sent (only those, with backoff, for a bounded
number of rounds). Records that can never be sent are refused before the first request.
"""

from producer.batching import BatchLimits, BatchProducer, RetryPolicy
from producer.clients import kinesis_client, sqs_client
from producer.errors import (
    ProducerConfigurationError,
    ProducerError,
    RecordFailure,
    RecordProblem,
    RecordsRefusedError,
    UnsentRecordsError,
)
from producer.events import Event
from producer.kinesis import KINESIS_LIMITS, KinesisProducer
from producer.result import KinesisReceipt, ProduceResult, Receipt, SqsReceipt
from producer.sqs import SQS_LIMITS, SqsProducer

__all__ = [
    "KINESIS_LIMITS",
    "SQS_LIMITS",
    "BatchLimits",
    "BatchProducer",
    "Event",
    "KinesisProducer",
    "KinesisReceipt",
    "ProduceResult",
    "ProducerConfigurationError",
    "ProducerError",
    "Receipt",
    "RecordFailure",
    "RecordProblem",
    "RecordsRefusedError",
    "RetryPolicy",
    "SqsProducer",
    "SqsReceipt",
    "UnsentRecordsError",
    "kinesis_client",
    "sqs_client",
]
