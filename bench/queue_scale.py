"""Queue scale: the cost of submit, take, position and cancel with 10,000 and 100,000 waiting
jobs. The TierQueue is a sorted index, so each should stay flat or grow like log n.

    .venv/bin/python bench/queue_scale.py [--sizes 10000 100000] [--ops 2000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bot.queue import QueuedJob, TierQueue, compute_rank

TIERS = (("free", 0), ("pro", 1), ("max", 2))
KEYS = ("512x512:4:2", "512x384:4:2", "384x512:4:2", "768x512:4:2")


def fill(size: int, rng: random.Random) -> tuple[TierQueue, int]:
    queue = TierQueue()
    for seq in range(size):
        queue.put(make_job(queue, seq, rng, now=seq * 0.01))
    return queue, size


def make_job(queue: TierQueue, seq: int, rng: random.Random, now: float) -> QueuedJob:
    tier, level = rng.choice(TIERS)
    member = rng.randrange(max(1, seq // 5 + 1))
    rank = compute_rank(
        arrival=now, tier_rank=level, aging_s=30.0, member_last_rank=queue.member_last_rank(member), member_gap_s=30.0
    )
    return QueuedJob(f"j{seq}", member, tier, rank, seq, rng.choice(KEYS))


def timed(fn, ops: int) -> tuple[float, float]:
    """Median and p90 microseconds per call over `ops` calls (each call timed alone)."""
    samples = []
    for i in range(ops):
        start = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def bench(size: int, ops: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    rng = random.Random(seed)
    queue, next_seq = fill(size, rng)
    results = {}
    counter = iter(range(next_seq, next_seq + 10 * ops))
    results["submit"] = timed(lambda i: queue.put(make_job(queue, next(counter), rng, now=size * 0.01 + i)), ops)
    ids = [job.job_id for job in queue.waiting()]
    results["position"] = timed(lambda i: queue.position(rng.choice(ids)), ops)
    victims = rng.sample(ids, ops)
    results["cancel"] = timed(lambda i: queue.remove(victims[i]), ops)

    def take(_: int) -> None:
        for job in queue.take_batch(4):
            queue.finish(job.job_id)

    results["take (batch of 4)"] = timed(take, ops)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    table = {size: bench(size, args.ops) for size in args.sizes}
    ops = list(next(iter(table.values())))
    print("| operation | " + " | ".join(f"{size:,} waiting: median (p90) µs" for size in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for op in ops:
        cells = [f"{table[size][op][0]:.1f} ({table[size][op][1]:.1f})" for size in args.sizes]
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
