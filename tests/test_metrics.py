"""The bot's metrics on prometheus-client: what the core feeds, what a scrape shows, and that the
exposition parses as Prometheus reads it."""

from __future__ import annotations

import random

from prometheus_client.parser import text_string_to_metric_families

from bot.clock import FakeClock
from bot.config import load_config
from bot.metrics import ServiceMetrics
from bot.core.types import Accepted, Member
from bot.service import RestyleService
from bot.store import Store
from engine.api import EngineOutput
from tests.fakes import picture_bytes

PAYING = Member("telegram", "1001", "Ana")


def families(metrics: ServiceMetrics) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(metrics.render().decode())}


def test_exposition_parses_and_carries_the_default_collectors():
    metrics = ServiceMetrics()
    names = families(metrics)
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_gc_collections", "python_info"):
        assert name in names, name
    # The parser strips the counter suffix: the wire name is restyle_delivery_failures_total.
    for name in ("restyle_queue_length", "restyle_jobs", "restyle_job_seconds", "restyle_queue_wait_seconds",
                 "restyle_engine_batch_seconds", "restyle_engine_busy_seconds", "restyle_delivery_failures",
                 "restyle_payments", "restyle_engine_ready", "restyle_running_jobs"):  # fmt: skip
        assert name in names, name
    assert names["restyle_engine_busy_seconds"].type == "counter"
    assert names["restyle_queue_wait_seconds"].type == "histogram"


def test_two_services_in_one_process_keep_separate_registries():
    first, second = ServiceMetrics(), ServiceMetrics()
    first.delivery_failures.inc()
    assert first.value("restyle_delivery_failures_total") == 1
    assert second.value("restyle_delivery_failures_total") == 0


def test_store_counts_replace_the_last_scrape():
    metrics = ServiceMetrics()
    metrics.set_store_counts(queue_lengths={"free": 3, "gone": 1}, jobs_by_status={"done": 2}, running_jobs=1)
    metrics.set_store_counts(queue_lengths={"free": 4}, jobs_by_status={"done": 5}, running_jobs=0)
    text = metrics.render().decode()
    assert 'restyle_queue_length{tier="free"} 4.0' in text.splitlines()
    assert 'tier="gone"' not in text  # a tier taken out of the config does not linger
    assert 'restyle_jobs{status="failed"} 0.0' in text.splitlines()  # every status from the first scrape


def test_batch_feeds_wait_per_tier_batch_seconds_and_duty_cycle():
    metrics = ServiceMetrics()
    metrics.batch_started([("pro", 2.0), ("free", 40.0), ("free", 50.0)])
    metrics.batch_ran(1.5)
    metrics.batch_ran(0.5)
    assert metrics.value("restyle_batch_size_count") == 1 and metrics.value("restyle_batch_size_sum") == 3
    assert metrics.value("restyle_queue_wait_seconds_sum", tier="free") == 90
    assert metrics.value("restyle_queue_wait_seconds_count", tier="pro") == 1
    assert metrics.value("restyle_engine_batch_seconds_count") == 2
    assert metrics.value("restyle_engine_busy_seconds_total") == 2.0


async def test_service_measures_wait_in_line_on_its_clock_and_counts_payments(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[payments]\nsecret = "test-secret"\n[plans.pro_month]\ntier = "pro"\ndays = 30\nstars = 250\n')
    config = load_config(path, env={})
    store = await Store.open(config.bot.data_dir)
    clock = FakeClock()
    service = RestyleService(config, store, clock, rng=random.Random(1))
    await service.start()
    try:
        accepted = await service.jobs.submit(PAYING, picture_bytes(), "/restyle oil painting", {"chat": 1})
        assert isinstance(accepted, Accepted)
        await clock.advance(42.0)
        jobs = await service.batches.claim_batch(4)
        assert [j.job_id for j in jobs] == [accepted.job_id]
        await service.batches.complete([EngineOutput(accepted.job_id, seed=1, steps=2, seconds=3.0, error="boom")])
        metrics = service.metrics
        assert metrics.value("restyle_queue_wait_seconds_sum", tier="free") == 42.0
        assert metrics.value("restyle_engine_busy_seconds_total") == 3.0

        _, payload = await service.billing.invoice_payload(PAYING, "pro_month")
        await service.billing.record_payment(PAYING, payload, "ch-1", 250)
        await service.billing.record_payment(PAYING, payload, "ch-1", 250)  # replayed update
        assert metrics.value("restyle_payments_total", source="telegram-stars", outcome="paid") == 1
        assert metrics.value("restyle_payments_total", source="telegram-stars", outcome="duplicate") == 1
    finally:
        await service.close()
        await store.close()
