"""The EMF metric names the function publishes (namespace config.METRICS_NAMESPACE, dimensions service and
subscription): one contract, read by the handler, the alarms and dashboard in infra/, the local pollers'
counters and redrive."""

from __future__ import annotations

from typing import Final

DELIVERED: Final = "Delivered"  # records the endpoint accepted (2xx)
DELIVERY_FAILED: Final = "DeliveryFailed"  # records reported back to Lambda as failed, to be retried by it
RETRIED: Final = "Retried"  # attempts beyond each record's first, summed over the invocation
DUPLICATES_SKIPPED: Final = "DuplicatesSkipped"  # records an earlier invocation already finished: not POSTed
PARKED: Final = "Parked"  # records set aside in the parked-records queue: they can never succeed
DELIVERY_LATENCY: Final = "DeliveryLatency"  # ms one POST took to get its response: one histogram per invocation
# Prefix of the per-status-class counts of responses: Status2xx .. Status5xx, and Statusnetwork for none
STATUS_CLASS_PREFIX: Final = "Status"
HANDED_TO_RETRY_LANE: Final = "HandedToRetryLane"  # records the source path handed to the retry lane
HELD_KEYS: Final = "HeldKeys"  # keys with records waiting in the retry lane (docs/retry-lanes.md)
ENDPOINT_GONE: Final = "EndpointGone"  # 410 answers: the endpoint says it is gone; its alarm tells the team
# Seconds the oldest record a lane round looked at has waited in the retry lane (since its hand-over); published by
# every lane round, and every waiting record is looked at least every retry_lane.LANE_LOOK_AGAIN_SECONDS
RETRY_LANE_AGE: Final = "RetryLaneAge"
