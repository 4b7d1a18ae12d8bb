"""The capacity planner: the throughput model of CreditorWatch's article on Lambda at scale,
backlog forecasts and the settings that keep up, and the price of a million deliveries.

from capacity import Consumer
Consumer(batch_size=10, concurrency=5, max_in_flight=1).records_per_second  # 21.739... (50 per 2.3 s)
"""

from capacity.consumers import Overrides, PlannedConsumer, ad_hoc_consumer, subscription_consumer
from capacity.cost import (
    DEFAULT_FAILURE_RATE,
    FUNCTION_MEMORY_MB,
    CostPerMillion,
    Measurement,
    MeasurementError,
    SourceKind,
    Workload,
    cost_per_million,
    load_measurement,
    managed_path_per_million,
)
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
    "DEFAULT_FAILURE_RATE",
    "DEFAULT_INVOKE_OVERHEAD_SECONDS",
    "DEFAULT_RECORD_LATENCY_SECONDS",
    "FUNCTION_MEMORY_MB",
    "Adjustment",
    "Consumer",
    "CostPerMillion",
    "Forecast",
    "Measurement",
    "MeasurementError",
    "Overrides",
    "PlannedConsumer",
    "Setting",
    "SettingBounds",
    "SourceKind",
    "Workload",
    "ad_hoc_consumer",
    "batch_delivery_seconds",
    "cost_per_million",
    "forecast",
    "load_measurement",
    "managed_path_per_million",
    "subscription_consumer",
]
