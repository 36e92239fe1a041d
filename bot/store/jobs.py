"""Jobs, which are the queue: adding one (with its quota and rank), reading them, re-ranking,
and forgetting finished ones. The worker's claims and the front ends' delivery claims are in
bot/store/claims.py; both read the same rows (JobRecord)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from bot.store.base import StoreBase, chunks, in_list
from bot.store.db import Row, StoreError

ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class JobRecord:
    id: str
    account_id: int
    platform: str
    platform_user_id: str
    reply: dict[str, Any]  # what the owning front end needs to answer later (chat, message ids)
    prompt: str
    negative_prompt: str | None
    strength: float
    seed: int
    steps: int
    output_format: str | None
    width: int
    height: int
    batch_key: str
    tier: str
    rank: float
    seq: int
    status: str
    created_at: float
    quota_day: str
    started_at: float | None = None
    finished_at: float | None = None
    deliver_after: float | None = None
    delivered_at: float | None = None
    seconds: float | None = None
    error: str | None = None
    parent_job_id: str | None = None
    worker_id: str | None = None  # the worker process that runs it (while running)
    # The incoming request that asked for it (an update, interaction or form nonce), unique per
    # platform: the same request delivered twice, or retried, finds this job instead of a new one.
    request_key: str | None = None
    # One of a strength sweep's jobs: the sweep's lead job id (the lead's own id on the lead),
    # which holds the request key and the sweep's delivery lease. None: a job on its own.
    sweep_id: str | None = None


JOB_COLUMNS = [
    "id", "account_id", "platform", "platform_user_id", "reply_json", "prompt", "negative_prompt",
    "strength", "seed", "steps", "output_format", "width", "height", "batch_key", "tier", "rank",
    "seq", "status", "created_at", "quota_day", "started_at", "finished_at", "deliver_after",
    "delivered_at", "seconds", "error", "parent_job_id", "worker_id", "request_key", "sweep_id",
]  # fmt: skip
SELECT_JOB = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"


def job_from_row(row: Row) -> JobRecord:
    values = {column: row[column] for column in JOB_COLUMNS}
    values["reply"] = json.loads(values.pop("reply_json"))
    return JobRecord(**values)


def job_values(job: JobRecord) -> list[Any]:
    """A job's column values in JOB_COLUMNS order."""
    values = []
    for column in JOB_COLUMNS:
        if column == "reply_json":
            values.append(json.dumps(job.reply, separators=(",", ":")))
        else:
            values.append(getattr(job, column))
    return values


class JobsStore(StoreBase):
    """The jobs table seen from the members' side: queueing, positions, the queue's head, retention."""

    # Jobs: reading ---------------------------------------------------------------------------

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.db.fetch_one(f"{SELECT_JOB} WHERE id = ?", job_id)
        return job_from_row(row) if row else None

    async def job_for_request(self, platform: str, request_key: str) -> JobRecord | None:
        """The job an incoming request (see JobRecord.request_key) already queued, if any."""
        row = await self.db.fetch_one(f"{SELECT_JOB} WHERE platform = ? AND request_key = ?", platform, request_key)
        return job_from_row(row) if row else None

    async def jobs(self, job_ids: Iterable[str]) -> list[JobRecord]:
        ids = list(job_ids)
        if not ids:
            return []
        rows = await self.db.fetch_all(f"{SELECT_JOB} WHERE id IN {in_list(ids)}", *ids)
        by_id = {row["id"]: job_from_row(row) for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def sweep_jobs(self, sweep_id: str) -> list[JobRecord]:
        """A strength sweep's jobs, lead first, in strength order (their seqs are consecutive)."""
        rows = await self.db.fetch_all(f"{SELECT_JOB} WHERE sweep_id = ? ORDER BY seq, id", sweep_id)
        return [job_from_row(row) for row in rows]

    async def member_active_jobs(self, account_id: int) -> list[JobRecord]:
        """The member's waiting and running jobs, best-ranked first."""
        rows = await self.db.fetch_all(
            f"{SELECT_JOB} WHERE account_id = ? AND status IN ('queued', 'running') ORDER BY rank, seq, id",
            account_id,
        )
        return [job_from_row(row) for row in rows]

    async def position(self, job_id: str) -> int | None:
        """How many waiting jobs run before this one (0: next); None if it is not waiting."""
        row = await self.db.fetch_one("SELECT rank, seq, status FROM jobs WHERE id = ?", job_id)
        if row is None or row["status"] != "queued":
            return None
        return await self.db.fetch_value(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (rank, seq, id) < (?, ?, ?)",
            row["rank"], row["seq"], job_id,
        )  # fmt: skip

    async def waiting(self, limit: int) -> list[tuple[str, str]]:
        """(job id, tier) of the first `limit` waiting jobs, in the order they will run."""
        rows = await self.db.fetch_all(
            "SELECT id, tier FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?", limit
        )
        return [(row["id"], row["tier"]) for row in rows]

    async def waiting_jobs(self, limit: int) -> list[JobRecord]:
        """The first `limit` waiting jobs, in the order they will run: the i-th has position i."""
        rows = await self.db.fetch_all(f"{SELECT_JOB} WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?", limit)
        return [job_from_row(row) for row in rows]

    async def waiting_head(self, limit: int) -> tuple[list[JobRecord], int]:
        """waiting_jobs(limit) and running_count() in one read (0 running when none waits)."""
        rows = await self.db.fetch_all(
            f"SELECT {', '.join(JOB_COLUMNS)}, (SELECT COUNT(*) FROM jobs WHERE status = 'running') AS running_now "
            "FROM jobs WHERE status = 'queued' ORDER BY rank, seq, id LIMIT ?",
            limit,
        )  # fmt: skip
        return [job_from_row(row) for row in rows], int(rows[0]["running_now"]) if rows else 0

    async def waiting_by_tier(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT tier, COUNT(*) AS n FROM jobs WHERE status = 'queued' GROUP BY tier")
        return {row["tier"]: row["n"] for row in rows}

    async def running_count(self) -> int:
        return await self.db.fetch_value("SELECT COUNT(*) FROM jobs WHERE status = 'running'")

    async def undelivered_jobs(self, platforms: Iterable[str], now: float) -> list[str]:
        """Finished jobs of these platforms whose member has not been told yet (results and
        failure notices), that no front end is delivering right now. A strength sweep is one
        entry, its lead's id, and only once none of its jobs is waiting or running: it is
        delivered as a whole (see ClaimsStore.claim_sweep_delivery)."""
        names = list(platforms)
        if not names:
            return []
        rows = await self.db.fetch_all(
            "SELECT id, finished_at FROM jobs WHERE delivered_at IS NULL AND status IN ('done', 'failed') "
            f"AND sweep_id IS NULL AND platform IN {in_list(names)} "
            "AND (delivery_until IS NULL OR delivery_until < ?) "
            "UNION ALL "
            "SELECT lead.id, MAX(ended.finished_at) FROM jobs lead JOIN jobs ended ON ended.sweep_id = lead.id "
            "WHERE lead.id = lead.sweep_id AND ended.delivered_at IS NULL AND ended.status IN ('done', 'failed') "
            f"AND lead.platform IN {in_list(names)} AND (lead.delivery_until IS NULL OR lead.delivery_until < ?) "
            "AND NOT EXISTS (SELECT 1 FROM jobs busy WHERE busy.sweep_id = lead.id AND busy.status IN ('queued', 'running')) "
            "GROUP BY lead.id",
            *names, now, *names, now,
        )  # fmt: skip
        return [row["id"] for row in sorted(rows, key=lambda row: (row["finished_at"] or 0.0, row["id"]))]

    async def count_by_status(self) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    async def recent_seconds(self, limit: int) -> list[float]:
        rows = await self.db.fetch_all(
            "SELECT seconds FROM jobs WHERE status = 'done' AND seconds IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            limit,
        )
        return [row["seconds"] for row in rows]

    # Quota -----------------------------------------------------------------------------------

    async def used_today(self, account_id: int, day: str) -> int:
        used = await self.db.fetch_value(
            "SELECT used FROM daily_usage WHERE account_id = ? AND day = ?", account_id, day
        )
        return used or 0

    # Jobs: adding ----------------------------------------------------------------------------

    async def add_job(
        self,
        job: JobRecord,
        *,
        quota_limit: int,
        max_active: int,
        rank_for: Callable[[float | None], float],
        picture: bytes | None = None,
        picture_from: str | None = None,
    ) -> JobRecord | str:
        """Queue a new job with its input picture, spending one unit of its member's daily
        quota, in one transaction. The rank comes from `rank_for(the member's last active
        rank)`, read under a lock on the member's account, so two processes queueing for one
        member at once still space the jobs apart.

        Returns the stored job, or "quota" / "queue_limit" (and nothing written). A job with
        a request_key already stored for its platform returns that job, and nothing is written
        or charged: the same request retried (its first commit's outcome unknown) queues once.
        """
        added = await self.add_jobs(
            [job], quota_limit=quota_limit, max_active=max_active, rank_for=rank_for,
            picture=picture, picture_from=picture_from,
        )  # fmt: skip
        return added if isinstance(added, str) else added[0]

    async def add_jobs(
        self,
        jobs: list[JobRecord],
        *,
        quota_limit: int,
        max_active: int,
        rank_for: Callable[[float | None], float],
        picture: bytes | None = None,
        picture_from: str | None = None,
    ) -> list[JobRecord] | str:
        """add_job for one request of several jobs (a strength sweep), all or nothing: the
        member needs room for all of them in the quota and the queue. They get ONE rank (the
        request is one turn of the member's, not several) and consecutive seqs in the order
        given; the first carries the request key, and its input picture is copied to the others.

        Returns the stored jobs, or "quota" / "queue_limit". A request key stored already
        answers with that job and the rest of its sweep."""
        lead = jobs[0]
        async with self.db.transaction():
            await self.db.fetch_one(f"SELECT id FROM accounts WHERE id = ? {self.db.lock_clause}", lead.account_id)
            if lead.request_key is not None:
                # Under the account's lock: a second copy of the request waits for the first.
                existing = await self.job_for_request(lead.platform, lead.request_key)
                if existing is not None:
                    return await self.sweep_jobs(existing.sweep_id) if existing.sweep_id else [existing]
            active = await self.db.fetch_row(
                "SELECT COUNT(*) AS n, MAX(rank) AS last FROM jobs WHERE account_id = ? AND status IN ('queued', 'running')",
                lead.account_id,
            )
            if active["n"] + len(jobs) > max_active:
                return "queue_limit"
            used = await self.used_today(lead.account_id, lead.quota_day)
            if used + len(jobs) > quota_limit:
                return "quota"
            await self.db.execute(
                "INSERT INTO daily_usage (account_id, day, used) VALUES (?, ?, ?) "
                "ON CONFLICT (account_id, day) DO UPDATE SET used = daily_usage.used + excluded.used",
                lead.account_id, lead.quota_day, len(jobs),
            )  # fmt: skip
            # One counter row: arrival order across processes, without scanning the jobs.
            last_seq = await self.db.fetch_value("UPDATE job_seq SET n = n + ? RETURNING n", len(jobs))
            rank = rank_for(active["last"])
            stored = [replace(job, rank=rank, seq=last_seq - len(jobs) + 1 + i) for i, job in enumerate(jobs)]
            for job in stored:
                await self.db.execute(
                    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' * len(JOB_COLUMNS))})",
                    *job_values(job),
                )
            if picture is not None:
                await self.db.execute(
                    "INSERT INTO pictures (job_id, kind, data) VALUES (?, 'input', ?)", lead.id, picture
                )
            elif picture_from is not None:
                await self._copy_input(picture_from, lead.id)
            for job in stored[1:]:
                await self._copy_input(lead.id, job.id)
            return stored

    async def _copy_input(self, from_job: str, to_job: str) -> None:
        copied = await self.db.execute(
            "INSERT INTO pictures (job_id, kind, data) SELECT ?, kind, data FROM pictures "
            "WHERE job_id = ? AND kind = 'input'",
            to_job, from_job,
        )  # fmt: skip
        if copied != 1:
            raise StoreError(f"the picture of job {from_job} is gone")

    # Jobs: changing a waiting job --------------------------------------------------------------

    async def set_ranks(self, ranks: dict[str, float], tier: str) -> None:
        async with self.db.transaction():
            await self.db.execute_many(
                "UPDATE jobs SET rank = ?, tier = ? WHERE id = ? AND status = 'queued'",
                [(rank, tier, job_id) for job_id, rank in ranks.items()],
            )

    async def add_to_reply(self, job_id: str, changes: dict[str, Any], *, sent: str | None = None) -> None:
        """Set `changes` in a job's reply data, and add `sent` to its list of delivery steps sent,
        in one transaction on the row as it is now: the request's handler (where the status is),
        a delivery (a chat's new id) and the delivery flow (the steps sent) each write only their
        own keys, so none undoes what another wrote meanwhile."""
        async with self.db.transaction():
            stored = await self.db.fetch_value(
                f"SELECT reply_json FROM jobs WHERE id = ? {self.db.lock_clause}", job_id
            )
            if stored is None:
                return  # purged
            reply = {**json.loads(stored), **changes}
            if sent is not None:
                reply["sent"] = sorted({*reply.get("sent", []), sent})
            await self.db.execute(
                "UPDATE jobs SET reply_json = ? WHERE id = ?", json.dumps(reply, separators=(",", ":")), job_id
            )

    # Retention -------------------------------------------------------------------------------

    async def purge_finished(self, before: float) -> list[str]:
        """Forget jobs that ended before `before`, with their pictures; returns their ids.
        Daily usage rows stay: they hold no prompt or picture."""
        async with self.db.transaction():
            rows = await self.db.fetch_all(
                "DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished_at < ? RETURNING id",
                before,
            )
            ids = [row["id"] for row in rows]
            for chunk in chunks(ids, 500):
                await self.db.execute(f"DELETE FROM pictures WHERE job_id IN {in_list(chunk)}", *chunk)
        if ids:
            await self.db.reclaim()  # the purged prompts and pictures leave no copy behind
        return ids

    async def delivered_before(self, before: float) -> list[str]:
        """Jobs with a result delivered before `before` (their pictures may be compacted)."""
        rows = await self.db.fetch_all("SELECT id FROM jobs WHERE status = 'done' AND delivered_at < ?", before)
        return [row["id"] for row in rows]

    async def job_log(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest jobs with who asked, where, what and how it ended, for complaints."""
        rows = await self.db.fetch_all(
            "SELECT id, platform, platform_user_id, reply_json, prompt, status, error, created_at, finished_at "
            "FROM jobs ORDER BY created_at DESC LIMIT ?",
            limit,
        )
        return [dict(row) for row in rows]
