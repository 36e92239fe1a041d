"""Prometheus text exposition (format 0.0.4), stdlib only and platform-neutral.

`Histogram` is a cumulative histogram the core can own and feed (`observe`); the `render_*`
helpers turn plain numbers into metric families; `render_service_metrics` lays out the bot's
own metrics from plain data, so whatever serves /metrics (the web adapter, or anything else)
only gathers numbers and never formats text itself.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Engine wall time per pipeline call: a tiny CPU model takes 0.1 s, SD-Turbo on a GPU well
# under a second, a 50-step SDXL on a CPU minutes.
JOB_SECONDS_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative bucket counts, a sum and a count; observe on one thread (the event loop)."""

    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        self.counts = [0] * (len(self.buckets) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    @classmethod
    def of(cls, values: Iterable[float], buckets: Iterable[float]) -> "Histogram":
        histogram = cls(buckets)
        for value in values:
            histogram.observe(value)
        return histogram

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count of observations <= le) for every bucket, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*self.buckets, math.inf), self.counts):
            running += n
            out.append(("+Inf" if math.isinf(bound) else _number(bound), running))
        return out


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items()) + "}"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]


def render_gauge(name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> str:
    lines = _header(name, help_text, "gauge")
    lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def render_counter(name: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]) -> str:
    """`name` without the `_total` suffix; it is added to each sample as the format asks."""
    lines = _header(name, help_text, "counter")
    lines += [f"{name}_total{_labels(labels)} {_number(value)}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def render_histogram(name: str, help_text: str, histogram: Histogram) -> str:
    lines = _header(name, help_text, "histogram")
    lines += [f'{name}_bucket{{le="{le}"}} {n}' for le, n in histogram.cumulative()]
    lines += [f"{name}_sum {_number(histogram.sum)}", f"{name}_count {histogram.count}"]
    return "\n".join(lines) + "\n"


# Every status a job can have, so each series exists from the first scrape (Prometheus rates
# and alerts behave better when a series does not appear out of nowhere).
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


def render_service_metrics(
    *,
    queue_lengths: Mapping[str, int],
    jobs_by_status: Mapping[str, int],
    job_seconds: Histogram,
    batch_sizes: Histogram,
    delivery_failures: int,
    engine_ready: bool,
    running_jobs: int | None = None,
) -> str:
    statuses = {status: 0 for status in JOB_STATUSES}
    statuses.update(jobs_by_status)
    parts = [
        render_gauge(
            "restyle_queue_length",
            "Jobs waiting in the queue, per tier.",
            [({"tier": tier}, n) for tier, n in queue_lengths.items()],
        ),
        render_gauge(
            "restyle_jobs",
            "Jobs in the store, per status.",
            [({"status": status}, n) for status, n in sorted(statuses.items())],
        ),
        render_histogram("restyle_job_seconds", "Engine seconds per finished job (its batch's wall time).", job_seconds),
        render_histogram("restyle_batch_size", "Jobs per engine batch.", batch_sizes),
        render_counter(
            "restyle_delivery_failures", "Result deliveries that failed (each retry counts).", [({}, delivery_failures)]
        ),
        render_gauge("restyle_engine_ready", "1 once the model is loaded and the worker takes jobs.", [({}, engine_ready)]),
    ]
    if running_jobs is not None:
        parts.append(render_gauge("restyle_running_jobs", "Jobs in the engine right now.", [({}, running_jobs)]))
    return "".join(parts)
