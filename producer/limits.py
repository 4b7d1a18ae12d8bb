"""The Kinesis and SQS request limits the producer batches against, each with its unit.

Sources: the Kinesis Data Streams API reference (PutRecords) and the SQS developer guide (SendMessageBatch).
"""

from __future__ import annotations

from typing import Final

MIB: Final = 1_048_576  # bytes
KIB: Final = 1_024  # bytes

# --- Kinesis PutRecords: the data blob (before base64) plus the partition key count toward both byte limits.
KINESIS_MAX_RECORDS_PER_REQUEST: Final = 500  # records
KINESIS_MAX_RECORD_BYTES: Final = 1 * MIB  # bytes, a stream's default maximum record size
KINESIS_MAX_REQUEST_BYTES: Final = 5 * MIB  # bytes
KINESIS_MAX_PARTITION_KEY_CHARACTERS: Final = 256  # Unicode characters

# --- SQS SendMessageBatch. AWS raised the message ceiling to 1 MiB in 2025, but 256 KiB is what every
# queue accepts whatever its MaximumMessageSize (the dispatcher parks a larger payload in S3 and sends a reference).
SQS_MAX_ENTRIES_PER_REQUEST: Final = 10  # messages
SQS_MAX_MESSAGE_BYTES: Final = 256 * KIB  # bytes of message body
SQS_MAX_REQUEST_BYTES: Final = 256 * KIB  # bytes, the sum of the bodies in one batch
SQS_MAX_FIFO_ID_CHARACTERS: Final = 128  # MessageGroupId and MessageDeduplicationId
