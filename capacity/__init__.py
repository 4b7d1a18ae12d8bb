"""The capacity planner: the throughput model of CreditorWatch's article on Lambda at scale,
backlog forecasts and the settings that keep up.

from capacity import Consumer
Consumer(batch_size=10, concurrency=5, max_in_flight=1).records_per_second  # 21.739... (50 per 2.3 s)
"""

from capacity.consumers import Overrides, PlannedConsumer, ad_hoc_consumer, subscription_consumer
from capacity.model import (
    DEFAULT_INVOKE_OVERHEAD_SECONDS,
    DEFAULT_RECORD_LATENCY_SECONDS,
    Adjustment,
    Consumer,
    Forecast,
    Setting,
    SettingBounds,
    batch_delivery_seconds,
    forecast,
)

__all__ = [
    "DEFAULT_INVOKE_OVERHEAD_SECONDS",
    "DEFAULT_RECORD_LATENCY_SECONDS",
    "Adjustment",
    "Consumer",
    "Forecast",
    "Overrides",
    "PlannedConsumer",
    "Setting",
    "SettingBounds",
    "ad_hoc_consumer",
    "batch_delivery_seconds",
    "forecast",
    "subscription_consumer",
]
