"""The queue's ordering rules: the rank rule on its own, then the database queue (the jobs
table, bot/store.py) that orders by it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from bot.queue import compute_rank
from bot.store import JobRecord, Store

AGING = 30.0
GAP = 30.0
TIER_RANK = {"free": 0, "pro": 1, "max": 2}


# The rank rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arrival, tier_rank, last, expected",
    [
        (100.0, 0, None, 100.0),  # free, first job: its arrival
        (100.0, 1, None, 70.0),  # pro: one aging period ahead
        (100.0, 2, None, 40.0),  # max: two
        (100.0, 0, 90.0, 120.0),  # member's next job waits one gap behind the last
        (100.0, 0, 50.0, 100.0),  # a long-past last job does not push it back
        (100.0, 1, 60.0, 90.0),  # the gap wins over the tier head start
        (100.0, 2, 0.0, 40.0),  # the tier head start wins over an old last job
    ],
)
def test_rank_is_tier_head_start_or_member_gap_whichever_is_later(arrival, tier_rank, last, expected):
    rank = compute_rank(arrival=arrival, tier_rank=tier_rank, aging_s=AGING, member_last_rank=last, member_gap_s=GAP)
    assert rank == expected


def test_free_job_that_waited_one_aging_period_ties_with_a_new_pro_job():
    free = compute_rank(arrival=0.0, tier_rank=0, aging_s=AGING, member_last_rank=None, member_gap_s=GAP)
    pro = compute_rank(arrival=AGING, tier_rank=1, aging_s=AGING, member_last_rank=None, member_gap_s=GAP)
    assert free == pro


# The database queue ----------------------------------------------------------------------------


class Queue:
    """Submits jobs the way the service does (rank from compute_rank and the member's last
    active rank, read by add_job) and takes them the way a worker does, for readable tests."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.accounts: dict[int, int] = {}
        self.now = 1000.0

    async def add(self, job_id: str, member: int, tier: str, at: float, key: str = "k") -> JobRecord:
        if member not in self.accounts:
            account = await self.store.account_for("test", f"member{member}", now=0.0)
            self.accounts[member] = account.id
        record = JobRecord(
            id=job_id, account_id=self.accounts[member], platform="test", platform_user_id=f"member{member}",
            reply={}, prompt="p", negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None,
            width=64, height=64, batch_key=key, tier=tier, rank=0.0, seq=0, status="queued", created_at=at,
            quota_day="2027-01-15",
        )  # fmt: skip
        stored = await self.store.add_job(
            record,
            quota_limit=1000,
            max_active=1000,
            rank_for=lambda last: compute_rank(
                arrival=at, tier_rank=TIER_RANK[tier], aging_s=AGING, member_last_rank=last, member_gap_s=GAP
            ),
        )
        assert isinstance(stored, JobRecord), stored
        return stored

    async def take(self, max_batch: int = 1) -> list[str]:
        self.now += 1
        batch = await self.store.claim_batch(max_batch, "worker", now=self.now, lease_until=self.now + 60)
        return [job.id for job in batch]

    async def finish(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            assert await self.store.finish_job(
                job_id, "worker", b"png", seed=1, steps=4, seconds=1.0, deliver_after=0.0, now=self.now
            )

    async def run_all(self, max_batch: int = 1) -> list[str]:
        """Take and finish batches until the queue is empty; the order they ran in."""
        order = []
        while batch := await self.take(max_batch):
            order.append("+".join(batch))
            await self.finish(batch)
        return order


async def test_max_runs_before_pro_before_free_when_they_arrive_together(store):
    q = Queue(store)
    await q.add("free", 1, "free", at=0)
    await q.add("pro", 2, "pro", at=1)
    await q.add("max", 3, "max", at=2)
    assert await q.run_all() == ["max", "pro", "free"]


async def test_free_job_waits_behind_a_pro_job_that_came_later(store):
    q = Queue(store)
    await q.add("free", 1, "free", at=0)
    await q.add("pro", 2, "pro", at=20)
    assert await q.run_all() == ["pro", "free"]


async def test_old_free_job_passes_new_pro_and_max_jobs_by_aging(store):
    q = Queue(store)
    await q.add("free-old", 1, "free", at=0)
    # 31 s later a pro job arrives: the free job has already climbed to pro and is older.
    await q.add("pro-new", 2, "pro", at=31)
    # 61 s after the free job, a max job arrives: the free job has climbed two tiers by then.
    await q.add("max-new", 3, "max", at=61)
    assert await q.run_all() == ["free-old", "pro-new", "max-new"]


async def test_members_of_one_tier_take_turns(store):
    q = Queue(store)
    for i in range(3):
        await q.add(f"a{i}", 1, "free", at=0 + i * 0.1)
    await q.add("b0", 2, "free", at=1)
    await q.add("b1", 2, "free", at=1.1)
    await q.add("c0", 3, "free", at=2)
    assert await q.run_all() == ["a0", "b0", "c0", "a1", "b1", "a2"]


async def test_running_job_still_spaces_its_members_next_job(store):
    q = Queue(store)
    first = await q.add("a0", 1, "free", at=0)
    assert await q.take() == ["a0"]
    second = await q.add("a1", 1, "free", at=1)
    assert second.rank == first.rank + GAP
    await q.finish(["a0"])
    third = await q.add("a2", 1, "free", at=2)
    assert third.rank == second.rank + GAP


async def test_batch_takes_best_job_and_best_ranked_compatible_companions(store):
    q = Queue(store)
    await q.add("a", 1, "pro", at=0, key="512x512")
    await q.add("b", 2, "pro", at=1, key="512x384")
    await q.add("c", 3, "free", at=2, key="512x512")
    await q.add("d", 4, "free", at=3, key="512x512")
    await q.add("e", 5, "free", at=4, key="512x512")
    assert await q.take(2) == ["a", "c"]  # never d or e before c
    assert await q.take(4) == ["b"]  # a batch of one when nothing else fits
    assert await q.take(4) == ["d", "e"]
    assert await q.take(4) == []


async def test_batch_never_skips_a_better_ranked_compatible_job_for_a_later_one(store):
    q = Queue(store)
    # Submitted out of rank order: the later max job ranks before the earlier free ones.
    await q.add("f1", 1, "free", at=0, key="k")
    await q.add("f2", 2, "free", at=1, key="k")
    await q.add("m", 3, "max", at=2, key="k")
    await q.add("other", 4, "max", at=3, key="other")
    assert await q.take(2) == ["m", "f1"]  # f1 before f2, and "other" is incompatible
    assert await q.take(2) == ["other"]
    assert await q.take(2) == ["f2"]


async def test_position_counts_waiting_jobs_ahead(store):
    q = Queue(store)
    await q.add("f1", 1, "free", at=0)
    await q.add("f2", 2, "free", at=1)
    await q.add("p1", 3, "pro", at=2)
    assert [await store.position(j) for j in ("p1", "f1", "f2")] == [0, 1, 2]
    assert [job_id for job_id, _ in await store.waiting(10)] == ["p1", "f1", "f2"]
    assert await q.take() == ["p1"]
    assert await store.position("p1") is None  # running: no longer waiting
    assert [await store.position(j) for j in ("f1", "f2")] == [0, 1]


async def test_cancelled_job_leaves_the_queue_and_the_positions(store):
    q = Queue(store)
    await q.add("f1", 1, "free", at=0)
    await q.add("f2", 2, "free", at=1)
    await q.add("f3", 3, "free", at=2)
    cancelled = await store.mark_cancelled("f1", now=5.0)
    assert cancelled is not None and cancelled.status == "queued"
    assert await store.position("f1") is None
    assert [await store.position(j) for j in ("f2", "f3")] == [0, 1]
    assert await q.run_all() == ["f2", "f3"]


async def test_equal_ranks_run_in_arrival_order(store):
    q = Queue(store)
    await q.add("first", 1, "pro", at=30)  # rank 0
    await q.add("second", 2, "free", at=0)  # rank 0 too, arrived later
    assert await q.run_all() == ["first", "second"]


async def test_upgraded_members_waiting_job_moves_forward(store):
    q = Queue(store)
    await q.add("other", 1, "free", at=0)
    await q.add("mine", 2, "free", at=5)
    assert await store.position("mine") == 1
    await store.set_ranks({"mine": 5 - TIER_RANK["pro"] * AGING}, "pro")
    assert await store.position("mine") == 0


async def test_requeued_jobs_go_back_at_their_rank(store):
    q = Queue(store)
    await q.add("a", 1, "max", at=0)
    await q.add("b", 2, "free", at=1)
    assert await q.take() == ["a"]
    assert await store.position("b") == 0
    assert await store.requeue(["a"]) == ["a"]
    assert [await store.position(j) for j in ("a", "b")] == [0, 1]
