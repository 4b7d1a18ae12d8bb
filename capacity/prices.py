"""The one table of AWS prices the cost model reads: us-east-1 list prices, first usage tier, as the AWS
pricing pages published them when this table was dated. No free tier, no Savings Plans. Prices change:
re-read the pages and move the date together with any number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

PER_MILLION: Final = 1_000_000
BYTES_PER_GB: Final = 1_000_000_000  # CloudWatch Logs bills decimal gigabytes


@dataclass(frozen=True, slots=True)
class PriceTable:
    dated: date
    region: str
    lambda_arm64_usd_per_gb_second: float  # duration, Arm (Graviton), first 7.5 billion GB-s a month
    lambda_usd_per_request: float  # invocations, either architecture
    dynamodb_usd_per_read_request_unit: float  # on-demand; a strongly consistent read of up to 4 KB is one
    dynamodb_usd_per_write_request_unit: float  # on-demand; a write of up to 1 KB is one
    sqs_standard_usd_per_request: float  # each 64 KB chunk of a request is one
    sqs_fifo_usd_per_request: float
    cloudwatch_logs_usd_per_gb_ingested: float  # standard log class (Lambda's logs, first tier)
    kms_usd_per_request: float
    secrets_manager_usd_per_api_call: float
    eventbridge_pipes_usd_per_request: float  # each 64 KB chunk of an event is one
    api_destinations_usd_per_invocation: float


PRICES: Final = PriceTable(
    dated=date(2025, 6, 1),
    region="us-east-1",
    lambda_arm64_usd_per_gb_second=0.0000133334,
    lambda_usd_per_request=0.20 / PER_MILLION,
    dynamodb_usd_per_read_request_unit=0.125 / PER_MILLION,
    dynamodb_usd_per_write_request_unit=0.625 / PER_MILLION,
    sqs_standard_usd_per_request=0.40 / PER_MILLION,
    sqs_fifo_usd_per_request=0.50 / PER_MILLION,
    cloudwatch_logs_usd_per_gb_ingested=0.50,
    kms_usd_per_request=0.03 / 10_000,
    secrets_manager_usd_per_api_call=0.05 / 10_000,
    eventbridge_pipes_usd_per_request=0.40 / PER_MILLION,
    api_destinations_usd_per_invocation=0.20 / PER_MILLION,
)
