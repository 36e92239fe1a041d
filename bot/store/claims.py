"""Who holds a job: a worker's claim on a batch under a lease (renewed, or requeued when it runs
out), the result stored only by the holder, and a front end's claim to deliver a finished job once."""

from __future__ import annotations

import asyncio

from bot.store.base import StoreBase, in_list
from bot.store.jobs import ACTIVE, JOB_COLUMNS, SELECT_JOB, JobRecord, job_from_row


class ClaimsStore(StoreBase):
    """Claims and leases on jobs: the worker's side, then the front ends' side."""

    # Jobs: the worker's side -----------------------------------------------------------------

    async def claim_batch(self, max_batch: int, worker_id: str, now: float, lease_until: float) -> list[JobRecord]:
        """Mark the best-ranked waiting job and up to max_batch - 1 compatible ones (same batch
        key, best-ranked first) running for this worker, in one statement. On PostgreSQL rows
        other workers are claiming are skipped, not waited for (FOR UPDATE SKIP LOCKED)."""
        skip = f"{self.db.lock_clause} SKIP LOCKED" if self.db.lock_clause else ""
        # One statement is its own transaction on both databases (SQLite takes the write lock
        # before it reads, as BEGIN IMMEDIATE would): no BEGIN and COMMIT around it, which on
        # SQLite were two more trips to the database's thread on the path the engine waits on.
        claim = asyncio.ensure_future(self.db.fetch_written(
            "WITH best AS ("
            f" SELECT batch_key FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT 1 {skip}"
            "), picked AS ("
            " SELECT id FROM jobs WHERE status = 'queued' AND batch_key = (SELECT batch_key FROM best)"
            f" ORDER BY rank, seq, id LIMIT ? {skip}"
            ") "
            "UPDATE jobs SET status = 'running', started_at = ?, worker_id = ?, lease_until = ? "
            f"WHERE id IN (SELECT id FROM picked) RETURNING {', '.join(JOB_COLUMNS)}",
            max_batch, now, worker_id, lease_until,
        ))  # fmt: skip
        try:
            rows = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # A stopping worker cut its claim-ahead short. The statement still runs to its end
            # (on aiosqlite's thread, or on the server), and with no transaction to roll back
            # what it took would stay 'running' for a worker that never runs it: back in line.
            await asyncio.wait([claim])
            if not claim.cancelled() and claim.exception() is None and claim.result():
                await self.requeue([row["id"] for row in claim.result()])
            raise
        return sorted((job_from_row(row) for row in rows), key=lambda job: (job.rank, job.seq, job.id))

    async def renew_lease(self, worker_id: str, job_ids: list[str], lease_until: float) -> int:
        """Keep this worker's running jobs; returns how many it still holds."""
        if not job_ids:
            return 0
        return await self.db.execute(
            f"UPDATE jobs SET lease_until = ? WHERE status = 'running' AND worker_id = ? AND id IN {in_list(job_ids)}",
            lease_until, worker_id, *job_ids,
        )  # fmt: skip

    async def requeue_expired(self, now: float) -> list[str]:
        """Running jobs whose worker stopped renewing its lease (it died) go back in line at
        their original rank."""
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "UPDATE jobs SET status = 'queued', started_at = NULL, worker_id = NULL, lease_until = NULL "
                "WHERE status = 'running' AND lease_until < ? RETURNING id",
                now,
            )
        return [row["id"] for row in rows]

    async def requeue(self, job_ids: list[str] | None = None) -> list[str]:
        """Put running jobs back in line at their original rank: these (a batch that could not
        start), or all of them (None: the one SQLite process starting again)."""
        where = "status = 'running'" + (f" AND id IN {in_list(job_ids)}" if job_ids is not None else "")
        if job_ids is not None and not job_ids:
            return []
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "UPDATE jobs SET status = 'queued', started_at = NULL, worker_id = NULL, lease_until = NULL "
                f"WHERE {where} RETURNING id",
                *(job_ids or ()),
            )
        return [row["id"] for row in rows]

    async def finish_job(
        self,
        job_id: str,
        worker_id: str,
        result: bytes,
        *,
        seed: int,
        steps: int,
        seconds: float,
        deliver_after: float,
        now: float,
    ) -> bool:
        """Store a result and mark the job done, together. False (nothing written) when this
        worker no longer holds the job: it was cancelled, or its lease ran out and it went back
        in line, so the one result kept is the one from the worker that holds it."""
        async with self.db.transaction():
            held = await self.db.execute(
                "UPDATE jobs SET status = 'done', seed = ?, steps = ?, seconds = ?, deliver_after = ?, finished_at = ?, "
                "lease_until = NULL WHERE id = ? AND status = 'running' AND worker_id = ?",
                seed, steps, seconds, deliver_after, now, job_id, worker_id,
            )  # fmt: skip
            if held != 1:
                return False
            await self.db.execute(
                "INSERT INTO pictures (job_id, kind, data) VALUES (?, 'result', ?) "
                "ON CONFLICT (job_id, kind) DO UPDATE SET data = excluded.data",
                job_id, result,
            )  # fmt: skip
            return True

    async def mark_failed(self, job_id: str, error: str, now: float, *, worker_id: str | None = None) -> bool:
        """Fail an active job (held by `worker_id`, when given) and give its quota unit back;
        False if it had already ended or another worker holds it."""
        return await self._end_with_refund(job_id, "failed", error, now, worker_id) is not None

    async def mark_cancelled(self, job_id: str, now: float) -> JobRecord | None:
        """Cancel an active job and give its quota unit back; nothing is delivered for it.
        Returns the job as it was (status queued or running, and its worker) or None."""
        cancelled = await self.mark_cancelled_all([job_id], now)
        return cancelled[0] if cancelled else None

    async def mark_cancelled_all(self, job_ids: list[str], now: float) -> list[JobRecord]:
        """Cancel those of these jobs still active, in one transaction, each giving its quota
        unit back: a worker claiming meanwhile takes all of them or none (SQLite's claim waits
        for the write lock; PostgreSQL's skips the rows locked here first), so a /cancel of a
        member's jobs never lets a batch start on the ones it has not reached yet. Returns the
        jobs cancelled, as they were."""
        if not job_ids:
            return []
        async with self.db.transaction():
            if self.db.lock_clause:  # every row first, in one order: the claim skips them all
                await self.db.fetch_all(
                    f"SELECT id FROM jobs WHERE id IN {in_list(job_ids)} ORDER BY id {self.db.lock_clause}", *job_ids
                )
            ended = [await self._end_locked(job_id, "cancelled", None, now, None) for job_id in job_ids]
        return [job for job in ended if job is not None]

    async def _end_with_refund(
        self, job_id: str, status: str, error: str | None, now: float, worker_id: str | None
    ) -> JobRecord | None:
        async with self.db.transaction():
            return await self._end_locked(job_id, status, error, now, worker_id)

    async def _end_locked(
        self, job_id: str, status: str, error: str | None, now: float, worker_id: str | None
    ) -> JobRecord | None:
        """Within a transaction: end an active job (its worker's, where worker_id is given)."""
        row = await self.db.fetch_one(f"{SELECT_JOB} WHERE id = ? {self.db.lock_clause}", job_id)
        if row is None or row["status"] not in ACTIVE:
            return None
        if worker_id is not None and (row["status"] != "running" or row["worker_id"] != worker_id):
            return None
        await self.db.execute(
            "UPDATE jobs SET status = ?, error = ?, finished_at = ?, delivered_at = ?, lease_until = NULL "
            "WHERE id = ?",
            status, error, now, now if status == "cancelled" else None, job_id,
        )  # fmt: skip
        await self.db.execute(
            "UPDATE daily_usage SET used = CASE WHEN used > 0 THEN used - 1 ELSE 0 END "
            "WHERE account_id = ? AND day = ?",
            row["account_id"], row["quota_day"],
        )  # fmt: skip
        return job_from_row(row)

    # Jobs: the front ends' side --------------------------------------------------------------

    async def claim_delivery(self, job_id: str, owner: str, now: float, until: float) -> bool:
        """Take (or renew) the right to deliver a finished job until `until`, so that of several
        front ends exactly one sends it; False when another holds it or it was delivered."""
        return await self.claim_delivery_record(job_id, owner, now, until) is not None

    async def claim_delivery_record(self, job_id: str, owner: str, now: float, until: float) -> JobRecord | None:
        """claim_delivery that answers with the job as it is once claimed (None: not claimed),
        in the same statement: a delivery read the job again right after claiming it."""
        rows = await self.db.fetch_written(
            "UPDATE jobs SET delivery_by = ?, delivery_until = ? WHERE id = ? AND delivered_at IS NULL "
            "AND status IN ('done', 'failed') AND (delivery_by IS NULL OR delivery_by = ? OR delivery_until < ?) "
            f"RETURNING {', '.join(JOB_COLUMNS)}",
            owner, until, job_id, owner, now,
        )  # fmt: skip
        return job_from_row(rows[0]) if rows else None

    async def claim_sweep_delivery(self, sweep_id: str, owner: str, now: float, until: float) -> list[JobRecord]:
        """claim_delivery for a strength sweep as a whole: the lease is taken on its lead, and
        only once none of its jobs is waiting or running and one has an undelivered result or
        failure (the lead itself may have been cancelled). Returns the sweep's jobs in strength
        order, as they are once claimed; empty: not claimed (not over yet, delivered, or
        another front end holds it)."""
        claimed = await self.db.execute(
            "UPDATE jobs SET delivery_by = ?, delivery_until = ? WHERE id = ? AND sweep_id = id "
            "AND (delivery_by IS NULL OR delivery_by = ? OR delivery_until < ?) "
            "AND NOT EXISTS (SELECT 1 FROM jobs busy WHERE busy.sweep_id = ? AND busy.status IN ('queued', 'running')) "
            "AND EXISTS (SELECT 1 FROM jobs ended WHERE ended.sweep_id = ? AND ended.delivered_at IS NULL "
            "AND ended.status IN ('done', 'failed'))",
            owner, until, sweep_id, owner, now, sweep_id, sweep_id,
        )  # fmt: skip
        if claimed != 1:
            return []
        rows = await self.db.fetch_all(f"{SELECT_JOB} WHERE sweep_id = ? ORDER BY seq, id", sweep_id)
        return [job_from_row(row) for row in rows]

    async def mark_sweep_delivered(self, sweep_id: str, now: float) -> None:
        """Every job of a sweep delivered (it is sent as a whole) and its lease let go."""
        await self.db.execute(
            "UPDATE jobs SET delivered_at = CASE WHEN delivered_at IS NULL THEN ? ELSE delivered_at END, "
            "delivery_by = NULL, delivery_until = NULL WHERE sweep_id = ?",
            now, sweep_id,
        )  # fmt: skip

    async def release_deliveries(self, owner: str | None, job_id: str | None = None) -> None:
        """Give up delivery leases: one job's or all of `owner`'s (None: everybody's, for the
        one SQLite process at start), so another front end or the next start may deliver."""
        where, args = ("delivery_by IS NOT NULL", []) if owner is None else ("delivery_by = ?", [owner])
        if job_id is not None:
            where, args = f"{where} AND id = ?", [*args, job_id]
        # A sweep's lease is on its lead, which may be a cancelled (so "delivered") job.
        await self.db.execute(
            "UPDATE jobs SET delivery_by = NULL, delivery_until = NULL "
            f"WHERE (delivered_at IS NULL OR sweep_id = id) AND {where}",
            *args,
        )

    async def mark_delivered(self, job_id: str, now: float) -> None:
        await self.db.execute("UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", now, job_id)
