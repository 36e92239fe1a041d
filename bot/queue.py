"""The tier-ranked fair queue: one number per job decides who runs next.

    rank = max(arrival - tier_rank * aging_s, previous rank of the member's waiting job + member_gap_s)

The lowest rank runs first. A tier's head start of `aging_s` per tier level means a free job that
has waited `aging_s` ties with a pro job that just arrived: waiting jobs climb one tier per
`aging_s`, so nobody starves. The member term spaces one member's jobs apart, so a member with
ten jobs takes turns with the others of the same tier instead of pushing them back (round-robin).

Because a rank never changes by itself, the queue is a sorted index: taking, cancelling and
positions cost O(log n). The state is plain numbers a database row can hold (the store keeps the
rank of every job, and a restart rebuilds this index from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from sortedcontainers import SortedList


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    account_id: int
    tier: str
    rank: float
    seq: int  # arrival order; breaks ties between equal ranks
    batch_key: str  # jobs with equal keys may share one engine call

    @property
    def order(self) -> tuple[float, int, str]:
        return (self.rank, self.seq, self.job_id)


def compute_rank(
    *,
    arrival: float,
    tier_rank: int,
    aging_s: float,
    member_last_rank: float | None,
    member_gap_s: float,
) -> float:
    base = arrival - tier_rank * aging_s
    if member_last_rank is None:
        return base
    return max(base, member_last_rank + member_gap_s)


class TierQueue:
    """Waiting and running jobs, in rank order. Pure data: no clock, no I/O, no asyncio."""

    def __init__(self) -> None:
        self._waiting: SortedList = SortedList()  # of QueuedJob.order
        self._by_key: dict[str, SortedList] = {}
        self._by_member: dict[int, SortedList] = {}  # waiting and running, by order
        self._jobs: dict[str, QueuedJob] = {}
        self._running: dict[str, QueuedJob] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    @property
    def running(self) -> list[QueuedJob]:
        return list(self._running.values())

    def get(self, job_id: str) -> QueuedJob | None:
        return self._jobs.get(job_id) or self._running.get(job_id)

    def put(self, job: QueuedJob) -> None:
        if job.job_id in self._jobs or job.job_id in self._running:
            raise ValueError(f"job {job.job_id} is already queued")
        self._jobs[job.job_id] = job
        self._waiting.add(job.order)
        self._by_key.setdefault(job.batch_key, SortedList()).add(job.order)
        self._by_member.setdefault(job.account_id, SortedList()).add(job.order)

    def remove(self, job_id: str) -> QueuedJob | None:
        """Take a waiting job out (cancel); None if it is not waiting."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return None
        self._waiting.remove(job.order)
        self._discard_from(self._by_key, job.batch_key, job.order)
        self._discard_from(self._by_member, job.account_id, job.order)
        return job

    def take_batch(self, max_batch: int) -> list[QueuedJob]:
        """The best-ranked job and up to max_batch - 1 more that can share its engine call.

        The companions are the best-ranked jobs with the same batch key, so a batch never
        passes over a better-ranked compatible job.
        """
        if not self._waiting:
            return []
        best = self._jobs[self._waiting[0][2]]
        orders = list(self._by_key[best.batch_key].islice(0, max_batch))
        batch = []
        for order in orders:
            job = self._jobs.pop(order[2])
            self._waiting.remove(order)
            self._discard_from(self._by_key, job.batch_key, order)
            self._running[job.job_id] = job
            batch.append(job)
        return batch

    def finish(self, job_id: str) -> None:
        """A running job ended (any outcome): it no longer spaces its member's later jobs."""
        job = self._running.pop(job_id, None)
        if job is not None:
            self._discard_from(self._by_member, job.account_id, job.order)

    def requeue(self, job_ids: list[str]) -> None:
        """Put running jobs back at their original rank (their batch could not start)."""
        for job_id in job_ids:
            job = self._running.get(job_id)
            if job is not None:
                self.finish(job_id)
                self.put(job)

    def position(self, job_id: str) -> int | None:
        """How many waiting jobs run before this one (0: next); None if it is not waiting."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return self._waiting.index(job.order)

    def member_last_rank(self, account_id: int) -> float | None:
        orders = self._by_member.get(account_id)
        return orders[-1][0] if orders else None

    def member_job_ids(self, account_id: int) -> list[str]:
        """The member's waiting and running jobs, best-ranked first."""
        return [order[2] for order in self._by_member.get(account_id, ())]

    def rerank(self, new_ranks: dict[str, float]) -> None:
        """Give waiting jobs new ranks (an upgrade); running and unknown ids are ignored."""
        for job_id, rank in new_ranks.items():
            job = self.remove(job_id)
            if job is not None:
                self.put(QueuedJob(job.job_id, job.account_id, job.tier, rank, job.seq, job.batch_key))

    def waiting(self, limit: int | None = None) -> Iterator[QueuedJob]:
        for order in self._waiting.islice(0, limit):
            yield self._jobs[order[2]]

    def count_by_tier(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            counts[job.tier] = counts.get(job.tier, 0) + 1
        return counts

    @staticmethod
    def _discard_from(index: dict, key: object, order: tuple) -> None:
        orders = index.get(key)
        if orders is None:
            return
        orders.discard(order)
        if not orders:
            del index[key]
