"""A member's jobs: admit, submit, again, cancel, look up, and their account's tier and ranks.

Front ends pass plain data in (who, where to answer, picture bytes, command text); every check
(limits, quota, rank, picture) and the job's row are one store transaction."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import secrets
from collections.abc import Callable
from typing import Any

from bot.clock import Clock, utc_day
from bot.commands import (
    SWEEP_STRENGTHS,
    CommandError,
    RestyleCommand,
    apply_style,
    parse_restyle,
    with_strength_delta,
)
from bot.config import Config, TierSettings
from bot.core import refusals, texts
from bot.core.dispatch import STORE_RETRY_S, Dispatch
from bot.core.guards import FloodGuard
from bot.core.types import Accepted, JobView, Member, MemberView, Reason, Refused
from bot.core.views import DEFAULT_BATCH_SECONDS, JobViews
from bot.decoding import PictureDecoder
from bot.i18n import Text, translator
from bot.moderation import BANNED, REFUSED_BY_RULES, Blocklist
from bot.queue import compute_rank
from bot.store import JobRecord, Store, StoreError
from engine.api import batch_key, random_seed, scheduled_steps
from engine.pictures import PictureError, decoded_pixel_limit, stored_bytes

log = logging.getLogger("bot.core.jobs")


class Jobs:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        dispatch: Dispatch,
        views: JobViews,
        *,
        interrupt: Callable[[str], None],
        rng: random.Random | None = None,
        flood_guard: FloodGuard | None = None,
        decoder: PictureDecoder | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.dispatch = dispatch
        self.views = views
        # Tells this process's worker a running job was cancelled (Batches.interrupt_if_held).
        self._interrupt = interrupt
        self.rng = rng or random.Random()
        self.flood = flood_guard or FloodGuard()
        self.blocklist = Blocklist.from_settings(config.moderation)
        # Uploads decode in threads of their own, never behind the engine (see bot.decoding).
        self.decoder = decoder or PictureDecoder()
        # One decode holds at most what the largest tier can use (a free member's PNG may be
        # as big as a max member's: it is resized after decoding either way).
        self._max_decoded_pixels = decoded_pixel_limit(max(tier.max_side for tier in config.tiers.values()))
        # Head starts count tier levels (0, 1, 2 in rank order), whatever numbers the ranks are.
        self._tier_level = {
            tier.name: level for level, tier in enumerate(sorted(config.tiers.values(), key=lambda t: t.rank))
        }
        self.store_retry_s: tuple[float, ...] = STORE_RETRY_S

    # Members ---------------------------------------------------------------------------------

    async def _account_and_tier(self, member: Member) -> tuple[int, TierSettings]:
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        return account.id, self.config.tier(account.effective_tier(now))

    async def me(self, member: Member) -> MemberView:
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        tier = self.config.tier(account.effective_tier(now))
        jobs = await self.store.member_active_jobs(account.id)
        return MemberView(
            tier=tier.name,
            tier_expires_at=account.tier_expires_at if tier.name != "free" else None,
            used_today=await self.store.used_today(account.id, utc_day(now)),
            daily_quota=tier.daily_quota,
            max_queued=tier.max_queued,
            active_jobs=[await self.views.view(job) for job in jobs],
        )

    async def set_tier(
        self, member: Member, tier: str, expires_at: float | None, *, reason: str, changed_by: str
    ) -> MemberView:
        """Change a member's tier (payment, code or admin), audited; waiting jobs are re-ranked."""
        if tier not in self.config.tiers:
            raise ValueError(f"unknown tier {tier!r}")
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        await self.store.set_tier(account.id, tier, expires_at, reason=reason, changed_by=changed_by, now=now)
        await self.rerank_member(account.id, self.config.tier(tier))
        return await self.me(member)

    async def rerank_member(self, account_id: int, tier: TierSettings) -> None:
        jobs = await self.store.member_active_jobs(account_id)
        waiting = sorted((job for job in jobs if job.status == "queued"), key=lambda job: job.seq)
        last: float | None = None
        for job in jobs:
            if job.status == "running":
                last = job.rank if last is None else max(last, job.rank)
        ranks: dict[str, float] = {}
        sweep_ranks: dict[str, float] = {}  # a sweep's jobs keep one rank: one turn of the member's
        for job in waiting:
            if job.sweep_id is not None and job.sweep_id in sweep_ranks:
                ranks[job.id] = sweep_ranks[job.sweep_id]
                continue
            last = compute_rank(
                arrival=job.created_at,
                tier_rank=self._tier_level[tier.name],
                aging_s=self.config.queue.aging_s,
                member_last_rank=last,
                member_gap_s=self.config.queue.member_gap_s,
            )
            ranks[job.id] = last
            if job.sweep_id is not None:
                sweep_ranks[job.sweep_id] = last
        if ranks:
            await self.store.set_ranks(ranks, tier.name)

    # Admitting --------------------------------------------------------------------------------

    def admit(self, member: Member) -> Refused | None:
        """The flood guard for everything a member sends: each front end calls this once per
        incoming command, button or form, before it parses or looks anything up, whatever the
        command turns out to be (a refused /restyle, /help and /me count as much as a job). None:
        go ahead. A quiet refusal means the member was told already: answer nothing."""
        return self.flood.check(member.key, self.clock.now(), member.lang)

    # Submitting ------------------------------------------------------------------------------

    async def submit(
        self,
        member: Member,
        picture: bytes,
        command: str | RestyleCommand,
        reply: dict[str, Any],
        *,
        request_key: str | None = None,
    ) -> Accepted | Refused:
        """Check, prepare and queue one request (the front end has admitted it: see `admit`).
        Never raises for anything the member did.

        `request_key` names the incoming request (a Telegram chat and message id, a Discord
        interaction id, a web form's nonce): the same key again, from the same member, is
        answered with the job it queued, and queues and charges nothing."""
        key = _request_key(member, request_key)
        if key is not None:
            repeated = await self._answer_from_key(member, key)
            if repeated is not None:
                return repeated
        try:
            if isinstance(command, str):
                command = parse_restyle(command)
            command = apply_style(command, self.config.styles)
        except CommandError as exc:
            return Refused(Reason.COMMAND, exc.render(translator(member.lang)), lang=member.lang)
        return await self._submit(member, command, reply, picture=picture, request_key=key)

    async def again(
        self,
        member: Member,
        job_id: str,
        reply: dict[str, Any],
        *,
        strength_delta: float = 0.0,
        request_key: str | None = None,
    ) -> Accepted | Refused:
        """Run a finished job's picture and prompt again with a new seed (and, for Subtler and
        Stronger, another strength). No new upload: the prepared input is reused. The front end
        has admitted the button press (see `admit`)."""
        key = _request_key(member, request_key)
        job = await self._button_source(member, job_id, key)
        if not isinstance(job, JobRecord):
            return job
        command = RestyleCommand(
            prompt=job.prompt,
            strength=with_strength_delta(job.strength, strength_delta),
            seed=None,
            steps=job.steps if job.steps != self.config.engine.steps else None,
            negative_prompt=job.negative_prompt,
            output_format=job.output_format,
        )
        return await self._submit(member, command, reply, source_job=job, request_key=key)

    async def sweep(
        self, member: Member, job_id: str, reply: dict[str, Any], *, request_key: str | None = None
    ) -> Accepted | Refused:
        """The "Try 3 strengths" button under a result: the job's stored picture, prompt, no=
        text, steps and SAME seed at each of SWEEP_STRENGTHS, as one sweep (see submit). The
        front end has admitted the button press (see `admit`)."""
        key = _request_key(member, request_key)
        job = await self._button_source(member, job_id, key)
        if not isinstance(job, JobRecord):
            return job
        command = RestyleCommand(
            prompt=job.prompt,
            seed=job.seed,
            steps=job.steps if job.steps != self.config.engine.steps else None,
            negative_prompt=job.negative_prompt,
            output_format=job.output_format,
            sweep=True,
        )
        return await self._submit(member, command, reply, source_job=job, request_key=key)

    async def _button_source(self, member: Member, job_id: str, key: str | None) -> JobRecord | Accepted | Refused:
        """The finished job a result's button runs again (Again, Subtler, Stronger, Try 3
        strengths): the answer already given under this request key, a refusal (gone, or
        someone else's), or the job with its stored input."""
        if key is not None:
            repeated = await self._answer_from_key(member, key)
            if repeated is not None:
                return repeated
        job = await self.store.job(job_id)
        tr = translator(member.lang)
        if job is None or not await self.store.has_picture(job_id, "input"):
            return Refused(Reason.NOT_FOUND, tr.gettext(texts.JOB_GONE))
        if (job.platform, job.platform_user_id) != (member.platform, member.user_id):
            return Refused(Reason.NOT_YOURS, tr.gettext(texts.NOT_YOURS))
        return job

    async def _answer_from_key(self, member: Member, request_key: str) -> Accepted | Refused | None:
        """The answer to a request already queued under this key; None when it is new."""
        try:
            job = await self.store.job_for_request(member.platform, request_key)
        except StoreError as exc:
            log.error("could not look up request %s from %s: %s", request_key, member.key, exc)
            return Refused(Reason.STORAGE, translator(member.lang).gettext(texts.STORAGE_DOWN))
        if job is None:
            return None
        log.info("job %s: request %s from %s seen again; not queued twice", job.id, request_key, member.key)
        return await self._accepted(job, duplicate=True)

    async def _accepted(self, record: JobRecord, *, duplicate: bool = False) -> Accepted:
        sweep: tuple[str, ...] = ()
        try:
            if record.sweep_id is not None:
                sweep = tuple(job.id for job in await self.store.sweep_jobs(record.sweep_id))
            position = await self.store.position(record.id) or 0
            eta = await self.views.eta(record, position)
        except StoreError as exc:
            # The job is saved: say so (a "try again" here would make the member queue it twice).
            log.warning("job %s queued, but its position could not be read: %s", record.id, exc)
            position, eta = 0, DEFAULT_BATCH_SECONDS
        return Accepted(
            record.id, position, eta, record.tier, record.strength, record.seed, record.steps, duplicate, sweep
        )

    async def _add_jobs_retrying(self, records: list[JobRecord], **kwargs: Any) -> list[JobRecord] | str:
        """store.add_jobs; with a request key, a failed write is tried again (a database restart
        mid-commit leaves its outcome unknown: the key finds the job if it was saved after all,
        so the retry cannot queue it twice or charge the quota twice)."""
        pauses = self.store_retry_s[:3] if records[0].request_key is not None else ()
        for pause in (*pauses, None):
            try:
                if len(records) > 1:
                    return await self.store.add_jobs(records, **kwargs)
                one = await self.store.add_job(records[0], **kwargs)
                return one if isinstance(one, str) else [one]
            except StoreError as exc:
                if pause is None:
                    raise
                log.warning("job %s: saving it failed (%s); trying again in %.1f s", records[0].id, exc, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _submit(
        self,
        member: Member,
        command: RestyleCommand,
        reply: dict[str, Any],
        *,
        picture: bytes | None = None,
        source_job: JobRecord | None = None,
        request_key: str | None = None,
    ) -> Accepted | Refused:
        now = self.clock.now()
        tr = translator(member.lang)
        if not self.dispatch.accepting:
            return Refused(Reason.STORAGE, tr.gettext(texts.RESTARTING))
        if self.blocklist.blocks(command.prompt, command.negative_prompt):
            log.info("request from %s refused by the blocklist", member.key)
            return Refused(Reason.RULES, tr.gettext(REFUSED_BY_RULES))
        # Where later messages (status, result, failure) go, and in which language: they are
        # written after this request, maybe by another process, maybe after a restart.
        if member.lang:
            reply = {**reply, "lang": member.lang}
        # A sweep is one request of several jobs: each costs a job of the quota and a place in
        # the queue, and they are checked and queued together.
        count = len(SWEEP_STRENGTHS) if command.sweep else 1
        try:
            account_id, tier = await self._account_and_tier(member)
            if await self.store.is_banned(account_id):
                return Refused(Reason.BANNED, tr.gettext(BANNED))
            steps = command.steps if command.steps is not None else self.config.engine.steps
            day = utc_day(now)
            # Read before the picture is decoded, for a clear answer; the store checks the quota
            # and the queue again in its transaction, where two requests at once cannot both pass.
            refused = refusals.first_limit(
                self.config.tiers, tier, member.lang, wants_sweep=command.sweep, steps_asked=steps, count=count,
                active=len(await self.store.member_active_jobs(account_id)),
                used=await self.store.used_today(account_id, day),
            )  # fmt: skip
            if refused is not None:
                return refused

            if picture is not None:
                try:
                    prepared = await self.decoder.prepare(
                        picture,
                        who=member.key,
                        max_side=tier.max_side,
                        max_bytes=int(self.config.bot.max_upload_mb * 1_000_000),
                        max_decoded_pixels=self._max_decoded_pixels,
                    )
                except PictureError as exc:
                    return Refused(Reason.PICTURE, Text(exc.template, exc.params).render(tr))
                width, height = prepared.size
            else:
                assert source_job is not None
                prepared = None
                width, height = source_job.width, source_job.height

            default = command.strength if command.strength is not None else self.config.bot.default_strength
            strengths = SWEEP_STRENGTHS if command.sweep else (default,)
            seed = command.seed if command.seed is not None else random_seed(self.rng)
            job_ids = [self._new_job_id() for _ in strengths]
            job_id = job_ids[0]

            def rank_for(member_last_rank: float | None) -> float:
                return compute_rank(
                    arrival=now,
                    tier_rank=self._tier_level[tier.name],
                    aging_s=self.config.queue.aging_s,
                    member_last_rank=member_last_rank,
                    member_gap_s=self.config.queue.member_gap_s,
                )

            records = job_records(
                job_ids, strengths, member=member, account_id=account_id, reply=reply, command=command, seed=seed,
                steps=steps, size=(width, height), tier=tier.name, now=now, day=day, source_job=source_job,
                request_key=request_key,
            )  # fmt: skip
            stored_picture = await asyncio.to_thread(stored_bytes, prepared) if prepared is not None else None
            added = await self._add_jobs_retrying(
                records,
                quota_limit=tier.daily_quota,
                max_active=tier.max_queued,
                rank_for=rank_for,
                picture=stored_picture,
                picture_from=source_job.id if source_job is not None else None,
            )
            if added == "quota":
                return refusals.quota(
                    self.config.tiers, tier, member.lang, count, await self.store.used_today(account_id, day)
                )
            if added == "queue_limit":
                active = len(await self.store.member_active_jobs(account_id))
                return refusals.queue_limit(self.config.tiers, tier, member.lang, count, active)
            assert isinstance(added, list)
            if added[0].id != job_id:  # queued before under this request key (a retry found it)
                log.info(
                    "job %s: request %s from %s was saved already; not queued twice",
                    added[0].id,
                    request_key,
                    member.key,
                )
                return await self._accepted(added[0], duplicate=True)
            record = added[0]
        except (StoreError, OSError) as exc:
            log.error("could not accept a request from %s: %s", member.key, exc)
            return Refused(Reason.STORAGE, tr.gettext(texts.STORAGE_DOWN))
        accepted = await self._accepted(record)

        self.dispatch.work.set()
        await self.dispatch.publish(job_id, "queued")  # wakes an idle worker, in this process or another
        if command.sweep:
            log.info("jobs %s queued for %s as one sweep (%s, rank %.1f, position %d)", ", ".join(job_ids), member.key,
                     tier.name, record.rank, accepted.position)  # fmt: skip
        else:
            log.info("job %s queued for %s (%s, rank %.1f, position %d)", job_id, member.key, tier.name, record.rank,
                     accepted.position)  # fmt: skip
        return accepted

    def _new_job_id(self) -> str:
        # Short enough for Telegram's 64-byte button data, unguessable enough for links.
        return secrets.token_hex(5)

    async def job(self, job_id: str) -> JobView | None:
        record = await self.store.job(job_id)
        return await self.views.view(record) if record else None

    async def sweep_jobs(self, sweep_id: str) -> list[JobView]:
        """A strength sweep's jobs, in strength order; empty where there is no such sweep."""
        return [await self.views.view(record) for record in await self.store.sweep_jobs(sweep_id)]

    async def cancel(self, member: Member, job_id: str | None = None) -> list[str]:
        """Cancel one of the member's jobs, or all of them waiting or running; returns the ids.
        A job of a strength sweep takes the rest of its sweep with it (what of it finished
        already is then delivered as the sweep)."""
        now = self.clock.now()
        account = await self.store.account_for(member.platform, member.user_id, now, member.name)
        active = await self.store.member_active_jobs(account.id)
        mine = [job.id for job in active]
        targets = [job_id] if job_id is not None else mine
        sweeps = {job.id: job.sweep_id for job in active if job.sweep_id is not None}
        if job_id is not None:
            # The job named may have ended already (a sweep's first result is in): its sweep's
            # other jobs still go, and only the member's own active jobs are ever targets.
            named = sweeps.get(job_id)
            if named is None and job_id not in mine:
                record = await self.store.job(job_id)
                named = record.sweep_id if record is not None else None
            if named is not None:
                targets = [job.id for job in active if job.sweep_id == named]
        # All in one transaction: a worker claiming meanwhile starts none of them.
        ended = await self.store.mark_cancelled_all([target for target in targets if target in mine], now)
        cancelled = []
        for before in ended:
            target = before.id
            cancelled.append(target)
            if before.status == "running":  # its worker, here or elsewhere, may stop early
                self._interrupt(target)
                await self.dispatch.publish(target, "cancelled")
            self.dispatch.notify(target)  # the owning front end replaces its status with "Cancelled"
            log.info("job %s cancelled by %s", target, member.key)
        for sweep_id in {sweeps[target] for target in cancelled if target in sweeps}:
            self.dispatch.schedule_sweep_delivery(sweep_id)  # its finished jobs, if any, go out now
        return cancelled

    async def add_to_reply(self, job_id: str, changes: dict[str, Any]) -> None:
        """A front end records where it answered (a status message's id, a chat's new id), so it
        finds it again after a restart. Only the keys given change: what the core wrote at submit
        (the member's language) and the delivery steps recorded stay."""
        await self.store.add_to_reply(job_id, changes)


def job_records(
    job_ids: list[str],
    strengths: tuple[float, ...],
    *,
    member: Member,
    account_id: int,
    reply: dict[str, Any],
    command: RestyleCommand,
    seed: int,
    steps: int,
    size: tuple[int, int],
    tier: str,
    now: float,
    day: str,
    source_job: JobRecord | None,
    request_key: str | None,
) -> list[JobRecord]:
    """The jobs of one request, one per strength (three for a sweep, led by the first), as the
    store queues them; their rank is set by the store, under the member's lock.

    Each job of a sweep carries the normal batch key, so it batches with any job of its size and
    effective steps. Its siblings share a pipeline call only where their effective steps match
    too (at 4 steps 0.5 and 0.7 both make 2 UNet calls, 0.3 one): diffusers runs
    int(steps * strength) calls, one number per call."""
    width, height = size
    lead = job_ids[0]
    records = []
    for job_id, strength in zip(job_ids, strengths, strict=True):
        job_steps = scheduled_steps(steps, strength)
        records.append(JobRecord(
            id=job_id,
            account_id=account_id,
            platform=member.platform,
            platform_user_id=member.user_id,
            reply=reply,
            prompt=command.prompt,
            negative_prompt=command.negative_prompt,
            strength=strength,
            seed=seed,
            steps=job_steps,
            output_format=command.output_format,
            width=width,
            height=height,
            batch_key=batch_key(width, height, job_steps, strength),
            tier=tier,
            rank=0.0,
            seq=0,
            status="queued",
            created_at=now,
            quota_day=day,
            parent_job_id=source_job.id if source_job else None,
            request_key=request_key if job_id == lead else None,  # the lead answers for the sweep
            sweep_id=lead if command.sweep else None,
        ))  # fmt: skip
    return records


REQUEST_KEY_MAX = 200


def _request_key(member: Member, request_key: str | None) -> str | None:
    """The stored form of a request key: scoped to the member (keys are unique per platform in
    the database, and one member's key must never answer another's request), and bounded."""
    if request_key is None or request_key == "":
        return None
    key = f"{member.user_id}/{request_key}"
    if len(key) > REQUEST_KEY_MAX:  # hashed, not cut: two long keys must not become one
        key = f"{member.user_id}/sha256:{hashlib.sha256(request_key.encode()).hexdigest()}"
    return key
