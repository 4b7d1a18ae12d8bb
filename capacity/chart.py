"""A PNG of throughput against batch size, one line per concurrency, with the incoming rate to beat."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from capacity.model import Consumer

CHART_CONCURRENCIES = (1, 2, 5, 10, 20)  # invocations at once, drawn besides the consumer's own
CHART_MIN_LARGEST_BATCH = 100  # records: the x axis reaches at least this far, and twice the current batch
CHART_SIZE_INCHES = (9.0, 5.5)
CHART_DPI = 120


def draw_throughput_chart(
    consumer: Consumer, path: Path, max_batch_size: int, incoming_per_second: float | None = None, title: str = ""
) -> Path:
    """Sustained records/s (rate limit applied) for batch sizes 1 to a useful maximum; returns `path`."""
    # Imported here: matplotlib takes a noticeable time to import and only --chart needs it. The Agg
    # canvas renders without a display and without pyplot's global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    largest_batch = min(max_batch_size, max(CHART_MIN_LARGEST_BATCH, 2 * consumer.batch_size))
    batch_sizes = range(1, largest_batch + 1)
    figure = Figure(figsize=CHART_SIZE_INCHES, dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for concurrency in sorted({*CHART_CONCURRENCIES, consumer.concurrency}):
        rates = [
            dataclasses.replace(consumer, batch_size=size, concurrency=concurrency).sustained_records_per_second
            for size in batch_sizes
        ]
        is_current = concurrency == consumer.concurrency
        axes.plot(
            batch_sizes,
            rates,
            label=f"concurrency {concurrency}" + (" (current)" if is_current else ""),
            linewidth=2.5 if is_current else 1.2,
        )
    axes.plot(
        [consumer.batch_size],
        [consumer.sustained_records_per_second],
        marker="o",
        color="black",
        linestyle="none",
        label=f"current: batch {consumer.batch_size}, {consumer.sustained_records_per_second:.2f} rec/s",
    )
    if incoming_per_second is not None:
        axes.axhline(incoming_per_second, color="red", linestyle="--", label=f"incoming {incoming_per_second:g}/s")
    if consumer.rate_ceiling_per_second is not None:
        axes.axhline(
            consumer.rate_ceiling_per_second,
            color="grey",
            linestyle=":",
            label=f"rate limit ceiling {consumer.rate_ceiling_per_second:g}/s "
            f"({consumer.concurrency} x {consumer.rate_limit_per_second:g}/s)",
        )
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(ScalarFormatter())  # 1, 10, 100 rather than 10^0, 10^1, 10^2
    axes.set_xlabel("batch size (records per invocation)")
    axes.set_ylabel("records per second")
    axes.set_title(
        title
        or f"max_in_flight {consumer.max_in_flight}, invoke {consumer.invoke_overhead_seconds:g} s, "
        f"{consumer.record_latency_seconds:g} s per record"
    )
    axes.grid(visible=True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    return path
