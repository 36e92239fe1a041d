"""The queue's ordering rules, on the pure TierQueue (no clock, no database)."""

from bot.queue import QueuedJob, TierQueue, compute_rank

AGING = 30.0
GAP = 30.0
TIER_RANK = {"free": 0, "pro": 1, "max": 2}


class Ranker:
    """Assigns ranks the way the service does, for readable tests."""

    def __init__(self, queue: TierQueue) -> None:
        self.queue = queue
        self.seq = 0

    def add(self, job_id: str, member: int, tier: str, at: float, key: str = "k") -> QueuedJob:
        self.seq += 1
        rank = compute_rank(
            arrival=at,
            tier_rank=TIER_RANK[tier],
            aging_s=AGING,
            member_last_rank=self.queue.member_last_rank(member),
            member_gap_s=GAP,
        )
        job = QueuedJob(job_id, member, tier, rank, self.seq, key)
        self.queue.put(job)
        return job


def take_order(queue: TierQueue, max_batch: int = 1) -> list[str]:
    order = []
    while queue:
        batch = queue.take_batch(max_batch)
        order.append("+".join(job.job_id for job in batch) if max_batch > 1 else batch[0].job_id)
        for job in batch:
            queue.finish(job.job_id)
    return order


def test_max_before_pro_before_free_when_they_arrive_together():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("free", 1, "free", at=0)
    r.add("pro", 2, "pro", at=1)
    r.add("max", 3, "max", at=2)
    assert take_order(queue) == ["max", "pro", "free"]


def test_free_job_waits_behind_pro_job_that_came_later():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("free", 1, "free", at=0)
    r.add("pro", 2, "pro", at=20)
    assert take_order(queue) == ["pro", "free"]


def test_waiting_free_job_climbs_one_tier_per_aging_period():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("free-old", 1, "free", at=0)
    # 31 s later a pro job arrives: the free job has already climbed to pro and is older.
    r.add("pro-new", 2, "pro", at=31)
    # 61 s after the free job, a max job arrives: the free job has climbed two tiers by then.
    r.add("max-new", 3, "max", at=61)
    assert take_order(queue) == ["free-old", "pro-new", "max-new"]


def test_round_robin_between_members_of_one_tier():
    queue = TierQueue()
    r = Ranker(queue)
    for i in range(3):
        r.add(f"a{i}", 1, "free", at=0 + i * 0.1)
    r.add("b0", 2, "free", at=1)
    r.add("b1", 2, "free", at=1.1)
    r.add("c0", 3, "free", at=2)
    assert take_order(queue) == ["a0", "b0", "c0", "a1", "b1", "a2"]


def test_position_counts_waiting_jobs_ahead():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("f1", 1, "free", at=0)
    r.add("f2", 2, "free", at=1)
    r.add("p1", 3, "pro", at=2)
    assert queue.position("p1") == 0
    assert queue.position("f1") == 1
    assert queue.position("f2") == 2
    queue.remove("f1")
    assert queue.position("f2") == 1
    assert queue.position("f1") is None


def test_batch_takes_best_job_and_best_ranked_compatible_companions():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("a", 1, "pro", at=0, key="512x512")
    r.add("b", 2, "pro", at=1, key="512x384")
    r.add("c", 3, "free", at=2, key="512x512")
    r.add("d", 4, "free", at=3, key="512x512")
    r.add("e", 5, "free", at=4, key="512x512")
    batch = queue.take_batch(2)
    assert [job.job_id for job in batch] == ["a", "c"]  # never d or e before c
    assert [job.job_id for job in queue.take_batch(4)] == ["b"]
    assert [job.job_id for job in queue.take_batch(4)] == ["d", "e"]


def test_running_job_still_spaces_its_members_next_job():
    queue = TierQueue()
    r = Ranker(queue)
    first = r.add("a0", 1, "free", at=0)
    queue.take_batch(1)
    second = r.add("a1", 1, "free", at=1)
    assert second.rank == first.rank + GAP
    queue.finish("a0")
    third = r.add("a2", 1, "free", at=2)
    assert third.rank == second.rank + GAP


def test_rerank_moves_upgraded_member_forward():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("other", 1, "free", at=0)
    r.add("mine", 2, "free", at=5)
    assert queue.position("mine") == 1
    queue.rerank({"mine": 5 - TIER_RANK["pro"] * AGING})
    assert queue.position("mine") == 0


def test_requeue_puts_running_jobs_back_at_their_rank():
    queue = TierQueue()
    r = Ranker(queue)
    r.add("a", 1, "max", at=0)
    r.add("b", 2, "free", at=1)
    [taken] = queue.take_batch(1)
    assert queue.position("b") == 0
    queue.requeue([taken.job_id])
    assert queue.position("a") == 0 and queue.position("b") == 1
