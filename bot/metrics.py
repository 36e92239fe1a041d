"""The bot's Prometheus metrics, on prometheus-client, platform-neutral.

`ServiceMetrics` owns one registry per service (tests build many services in one process, and
prometheus-client refuses a name registered twice in one registry) with the default process,
platform and GC collectors. The core feeds it as things happen; counts that live in the store
(queue lengths, jobs per status) are set just before a scrape by whoever serves /metrics.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

# The format generate_latest writes; prometheus-client's own HTTP handler sends this type when
# the scraper asks for nothing else (CONTENT_TYPE_LATEST says 1.0.0 since 0.22).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Engine wall time per pipeline call: a tiny CPU model takes 0.1 s, SD-Turbo on a GPU well
# under a second, a 50-step SDXL on a CPU minutes.
JOB_SECONDS_BUCKETS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
# Time in line: a free member may wait many minutes behind paying tiers.
WAIT_SECONDS_BUCKETS: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# Every status a job can have, so each series exists from the first scrape (Prometheus rates
# and alerts behave better when a series does not appear out of nowhere).
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.queue_length = Gauge("restyle_queue_length", "Jobs waiting in the queue, per tier.", ["tier"], registry=r)
        self.jobs = Gauge("restyle_jobs", "Jobs in the store, per status.", ["status"], registry=r)
        self.running_jobs = Gauge("restyle_running_jobs", "Jobs in the engine right now (all workers).", registry=r)
        self.engine_ready = Gauge(
            "restyle_engine_ready", "1 once the model is loaded and the worker takes jobs.", registry=r
        )
        self.job_seconds = Histogram(
            "restyle_job_seconds", "Engine seconds per finished job (its batch's wall time).",
            buckets=JOB_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            "restyle_batch_size", "Jobs per engine batch.", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.engine_batch_seconds = Histogram(
            "restyle_engine_batch_seconds", "Engine wall seconds per batch.", buckets=JOB_SECONDS_BUCKETS, registry=r
        )
        # rate() of this is the engine's duty cycle (0..1 per worker process).
        self.engine_busy_seconds = Counter(
            "restyle_engine_busy_seconds", "Seconds this process's engine spent running batches.", registry=r
        )
        self.queue_wait_seconds = Histogram(
            "restyle_queue_wait_seconds", "Seconds from submission to the engine taking the job, per tier.",
            ["tier"], buckets=WAIT_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.delivery_failures = Counter(
            "restyle_delivery_failures", "Result deliveries that failed (each retry counts).", registry=r
        )
        self.payments = Counter(
            "restyle_payments", "Payments received, per source and outcome (paid, held, duplicate).",
            ["source", "outcome"], registry=r,
        )  # fmt: skip
        for status in JOB_STATUSES:
            self.jobs.labels(status=status)

    def batch_started(self, waits: list[tuple[str, float]]) -> None:
        """`waits`: (tier, seconds in line) for each job of the batch the engine takes."""
        self.batch_size.observe(len(waits))
        for tier, seconds in waits:
            self.queue_wait_seconds.labels(tier=tier).observe(max(0.0, seconds))

    def batch_ran(self, seconds: float) -> None:
        self.engine_batch_seconds.observe(seconds)
        self.engine_busy_seconds.inc(max(0.0, seconds))

    def set_store_counts(
        self, *, queue_lengths: Mapping[str, int], jobs_by_status: Mapping[str, int], running_jobs: int
    ) -> None:
        self.queue_length.clear()  # a tier removed from the config must not linger
        for tier, n in queue_lengths.items():
            self.queue_length.labels(tier=tier).set(n)
        statuses = {status: 0 for status in JOB_STATUSES} | dict(jobs_by_status)
        for status, n in statuses.items():
            self.jobs.labels(status=status).set(n)
        self.running_jobs.set(running_jobs)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when the series does not exist yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
