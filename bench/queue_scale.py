"""Queue scale: the cost of submit, position, cancel and claim on the database queue (the jobs
table, bot/store.py) with 10,000 and 100,000 waiting jobs, on SQLite (a file in a temp dir) and,
when a PostgreSQL server can be started (tests/pg_cluster.py), on PostgreSQL.

Claiming reads the head of the (status, rank, seq) index, so it stays flat; a position is a
count of the waiting jobs ahead in that index, so it grows with the jobs ahead (O(jobs ahead)).

    PYTHONPATH=. .venv/bin/python bench/queue_scale.py [--sizes 10000 100000] [--ops 1000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from bot.queue import compute_rank
from bot.store import JobRecord, Store
from bot.store.jobs import JOB_COLUMNS

TIERS = (("free", 0), ("pro", 1), ("max", 2))
KEYS = ("512x512:4:2", "512x384:4:2", "384x512:4:2", "768x512:4:2")
DAY = "2027-01-15"


class Filler:
    """Makes jobs the way the service ranks them (one member per 5 jobs, on average)."""

    def __init__(self, size: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.members = max(1, size // 5)
        self.last_rank: dict[int, float] = {}

    def make(self, seq: int, now: float) -> JobRecord:
        tier, level = self.rng.choice(TIERS)
        member = self.rng.randrange(self.members) + 1
        rank = compute_rank(
            arrival=now, tier_rank=level, aging_s=30.0, member_last_rank=self.last_rank.get(member), member_gap_s=30.0
        )
        self.last_rank[member] = rank
        return JobRecord(
            id=f"j{seq}", account_id=member, platform="bench", platform_user_id=str(member), reply={}, prompt="p",
            negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None, width=512, height=512,
            batch_key=self.rng.choice(KEYS), tier=tier, rank=rank, seq=seq, status="queued", created_at=now,
            quota_day=DAY,
        )  # fmt: skip


async def fill(store: Store, size: int, filler: Filler) -> None:
    """Bulk insert: the accounts, then `size` queued jobs (executemany, 5,000 a transaction)."""
    async with store.db.transaction():
        await store.db.execute_many(
            "INSERT INTO accounts (id, tier, created_at) VALUES (?, 'free', 0.0)",
            [(member + 1,) for member in range(filler.members)],
        )
    insert = f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})"
    for start in range(0, size, 5000):
        rows = [Store._job_values(filler.make(seq, seq * 0.01)) for seq in range(start + 1, min(size, start + 5000) + 1)]
        async with store.db.transaction():
            await store.db.execute_many(insert, rows)
    if store.shared:
        await store.db.execute("ANALYZE jobs")
    else:
        await store.db.execute("ANALYZE")


async def timed(fn, ops: int) -> tuple[float, float]:
    """Median and p90 microseconds per call over `ops` calls (each call timed alone)."""
    samples = []
    for i in range(ops):
        start = time.perf_counter_ns()
        await fn(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


async def bench(url: str, data_dir: Path, size: int, ops: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    store = await Store.open(data_dir, url)
    try:
        filler = Filler(size, seed)
        rng = filler.rng
        await fill(store, size, filler)
        results = {}

        async def submit(i: int) -> None:
            seq = size + 1 + i
            record = filler.make(seq, now=size * 0.01 + i)
            level = dict(TIERS)[record.tier]
            stored = await store.add_job(
                record, quota_limit=10**9, max_active=10**9,
                rank_for=lambda last: compute_rank(
                    arrival=record.created_at, tier_rank=level, aging_s=30.0, member_last_rank=last, member_gap_s=30.0
                ),
            )  # fmt: skip
            assert isinstance(stored, JobRecord), stored

        results["submit (add_job)"] = await timed(submit, ops)
        ids = [f"j{seq}" for seq in range(1, size + ops + 1)]
        results["position"] = await timed(lambda i: store.position(rng.choice(ids)), ops)
        victims = rng.sample(ids, ops)
        results["cancel (mark_cancelled)"] = await timed(lambda i: store.mark_cancelled(victims[i], now=1e9), ops)
        results["claim_batch(4)"] = await timed(
            lambda i: store.claim_batch(4, "bench", now=1e9, lease_until=1e9 + 60), ops
        )
        return results
    finally:
        await store.close()


async def run(sizes: list[int], ops: int, postgres: bool) -> dict[str, dict[int, dict[str, tuple[float, float]]]]:
    tables: dict[str, dict[int, dict[str, tuple[float, float]]]] = {"SQLite": {}}
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="queue-scale-") as tmp:
            tables["SQLite"][size] = await bench("", Path(tmp), size, ops)
    if postgres:
        from tests.pg_cluster import PgCluster, postgres_available

        reason = postgres_available()
        if reason:
            print(f"PostgreSQL skipped: {reason}")
            return tables
        tables["PostgreSQL"] = {}
        cluster = PgCluster.temporary(prefix="queue-scale-pg-")
        try:
            cluster.start()
            for size in sizes:
                url = cluster.create_database(f"bench_{size}")
                with tempfile.TemporaryDirectory(prefix="queue-scale-") as tmp:
                    tables["PostgreSQL"][size] = await bench(url, Path(tmp), size, ops)
                cluster.drop_database(f"bench_{size}")
        finally:
            cluster.close()
    return tables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    tables = asyncio.run(run(args.sizes, args.ops, not args.no_postgres))
    print("| backend | operation | " + " | ".join(f"{size:,} waiting: median (p90) µs" for size in args.sizes) + " |")
    print("|---|---|" + "---|" * len(args.sizes))
    for backend, table in tables.items():
        for op in next(iter(table.values())):
            cells = [f"{table[size][op][0]:.0f} ({table[size][op][1]:.0f})" for size in args.sizes]
            print(f"| {backend} | {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
