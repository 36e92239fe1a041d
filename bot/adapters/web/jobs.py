"""The page's jobs through the JSON API: submit, a job's state (also as a live stream), its
original and result files, Again / Subtler / Stronger, Cancel, "Try 3 strengths", Keep, and a
sweep's state, stream and ZIP (the sweep's own state and ZIP are sweep.py's). Only the page
member's own jobs are reachable: any other id is "gone", whether or not it exists."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.adapters.web.compare import JOB_ID_RE
from bot.adapters.web.errors import REFUSAL_STATUS, ApiError, json_error, said
from bot.adapters.web.sweep import sweep_state, sweep_zip
from bot.adapters.web.uploads import (
    NO_PICTURE,
    NOT_MULTIPART,
    command_from_form,
    is_form,
    picture_of,
    read_body,
    too_big_message,
)
from bot.commands import FORMATS, OUTPUT_FORMATS, STRENGTH_CHANGES, CommandError, describe_strength
from bot.core.types import Accepted, JobView, Member, Refused
from bot.i18n import N_, language, translator
from bot.service import RestyleService

TERMINAL = ("ready", "failed", "cancelled")
# How often a live stream re-sends a waiting job's state (ETA countdown), in seconds.
STREAM_REFRESH_S = 1.0
# A request id (the page makes one per press of Run): the same id again finds the same job.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
GONE = N_("That picture is not kept any more; pick it again and press Run.")
NOT_READY = N_("The result is not ready yet; it appears here as soon as it is.")
SWEEP_GONE = N_("That sweep is not kept any more; pick the picture again and press Run.")
BAD_REQUEST_ID = N_("request_id must be 8 to 64 letters, digits, '-' or '_'.")
BAD_CHANGE = N_('change must be "again", "subtler" or "stronger".')
BAD_FORMAT = N_("Results come as .png, .webp or .jpeg.")


class LiveJobs:
    """What this run has seen of the jobs as they change: the ones delivered (or failed), and
    the live streams waiting for a job's next change (a sweep's stream waits on its lead's id)."""

    def __init__(self) -> None:
        # The service marks a job delivered in the store just after deliver_result returns, so
        # the page must not wait for that write to show the result.
        self.delivered: OrderedDict[str, None] = OrderedDict()
        self.watchers: dict[str, set[asyncio.Event]] = {}
        self.closing = asyncio.Event()

    def mark_delivered(self, job_id: str) -> None:
        self.delivered[job_id] = None
        while len(self.delivered) > 10_000:
            self.delivered.popitem(last=False)
        self.wake(job_id)

    def wake(self, job_id: str) -> None:
        for event in self.watchers.get(job_id, ()):
            event.set()

    def close(self) -> None:
        """Every live stream ends at once (so the server can close without waiting on them)."""
        self.closing.set()
        for events in self.watchers.values():
            for event in events:
                event.set()


class JobRoutes:
    """The job routes of the page's one member (`member`), within the upload limits."""

    def __init__(
        self,
        service: RestyleService,
        member: Member,
        live: LiveJobs,
        *,
        max_upload_bytes: int,
        max_upload_mb: float,
        body_timeout_s: float,
    ) -> None:
        self.service = service
        self.member = member
        self.live = live
        self.max_upload_bytes = max_upload_bytes
        self.max_upload_mb = max_upload_mb
        self.body_timeout_s = body_timeout_s

    def _member_of(self, request: web.Request) -> Member:
        """The page's member, speaking the language the browser asks for (Accept-Language)."""
        return replace(self.member, lang=language(request.headers.get("Accept-Language")))

    def _flooded(self, request: web.Request) -> web.Response | None:
        """The flood guard, for every job, again and cancel request, before its body is read."""
        refused = self.service.jobs.admit(self._member_of(request))
        return None if refused is None else json_error(REFUSAL_STATUS["flood"], refused.text, reason="flood")

    async def submit(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        if not is_form(request):
            return json_error(400, said(request, NOT_MULTIPART))
        form = await read_body(request, request.post, self.body_timeout_s)
        request_id = request.headers.get("Idempotency-Key") or form.get("request_id") or None
        if request_id is not None and not (isinstance(request_id, str) and REQUEST_ID_RE.fullmatch(request_id)):
            return json_error(400, said(request, BAD_REQUEST_ID))
        member = self._member_of(request)
        tr = translator(member.lang)
        data = picture_of(form)
        if not data:
            return json_error(400, tr.gettext(NO_PICTURE))
        if len(data) > self.max_upload_bytes:
            return json_error(413, too_big_message(len(data), self.max_upload_mb, tr))
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            command = command_from_form(fields)
        except CommandError as exc:
            return json_error(400, exc.render(tr))
        outcome = await self.service.jobs.submit(member, data, command, {"page": True}, request_key=request_id)
        return await self._answer(outcome, member.lang)

    async def again(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        job_id = await self._own_job_id(request)
        try:
            body = await read_body(request, request.json, self.body_timeout_s) if request.can_read_body else {}
        except ApiError as exc:
            if exc.status == 400:  # not JSON: the same as no body
                body = {}
            else:
                raise
        if not isinstance(body, dict):
            body = {}
        change = str(body.get("change") or "again").lower()
        if change not in STRENGTH_CHANGES:
            return json_error(400, said(request, BAD_CHANGE))
        member = self._member_of(request)
        outcome = await self.service.jobs.again(member, job_id, {"page": True}, strength_delta=STRENGTH_CHANGES[change])
        return await self._answer(outcome, member.lang)

    async def _answer(self, outcome: Accepted | Refused, lang: str | None) -> web.Response:
        if isinstance(outcome, Refused):
            return json_error(REFUSAL_STATUS.get(outcome.reason, 400), outcome.text, reason=outcome.reason)
        state = await self._state(outcome.job_id, lang)
        if outcome.sweep:
            sweep = await self._sweep_state(outcome.job_id, lang)
            return web.json_response({"job": state, "sweep": sweep}, status=202)
        return web.json_response({"job": state}, status=202)

    async def cancel(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        job_id = await self._own_job_id(request)
        cancelled = await self.service.jobs.cancel(self.member, job_id)
        lang = self._member_of(request).lang
        state = await self._state(job_id, lang)
        answer: dict[str, Any] = {"cancelled": bool(cancelled), "job": state}
        if state is not None and state["sweep_id"] is not None:
            answer["sweep"] = await self._sweep_state(state["sweep_id"], lang)
        return web.json_response(answer)

    async def try_sweep(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        job_id = await self._own_job_id(request)
        member = self._member_of(request)
        return await self._answer(await self.service.jobs.sweep(member, job_id, {"page": True}), member.lang)

    async def keep(self, request: web.Request) -> web.Response:
        """The page shows the job as its current result (the core checks it is still kept)."""
        job_id = await self._own_job_id(request)
        member = self._member_of(request)
        kept = await self.service.results.keep(member, job_id)
        if isinstance(kept, Refused):
            return json_error(REFUSAL_STATUS.get(kept.reason, 404), kept.text, reason=kept.reason)
        return web.json_response({"job": await self._state(job_id, member.lang)})

    async def sweep_view(self, request: web.Request) -> web.Response:
        sweep_id = await self._own_sweep_id(request)
        return web.json_response(await self._sweep_state(sweep_id, self._member_of(request).lang))

    async def sweep_files_zip(self, request: web.Request) -> web.Response:
        sweep_id = await self._own_sweep_id(request)
        fmt = FORMATS.get(request.match_info["fmt"].lower())
        if fmt is None:
            return json_error(404, said(request, BAD_FORMAT))
        files = await self.service.results.sweep_files(self._member_of(request), sweep_id, fmt)
        if isinstance(files, Refused):
            return json_error(REFUSAL_STATUS.get(files.reason, 404), files.text)
        extension = OUTPUT_FORMATS[fmt].extension
        return web.Response(
            body=sweep_zip(files, extension),
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="restyle-{sweep_id}-{extension}.zip"',
                "Cache-Control": "private, max-age=3600",
            },
        )

    async def job_state(self, request: web.Request) -> web.Response:
        job_id = await self._own_job_id(request)
        return web.json_response(await self._state(job_id, self._member_of(request).lang))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the job's state now and at every change, until it ends."""
        job_id = await self._own_job_id(request)
        return await self._stream(request, job_id, functools.partial(self._state, lang=self._member_of(request).lang))

    async def sweep_events(self, request: web.Request) -> web.StreamResponse:
        """The sweep's one state (as /api/sweeps/<id>) now and at every change of any of its jobs."""
        sweep_id = await self._own_sweep_id(request)
        lang = self._member_of(request).lang
        return await self._stream(request, sweep_id, functools.partial(self._sweep_state, lang=lang))

    async def _stream(
        self,
        request: web.Request,
        job_id: str,
        read_state: Callable[[str], Awaitable[dict[str, Any] | None]],
    ) -> web.StreamResponse:
        state = await read_state(job_id)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        wake = asyncio.Event()
        self.live.watchers.setdefault(job_id, set()).add(wake)
        closing = self.live.closing
        try:
            await response.write(b"retry: 1000\n\n")
            last: dict[str, Any] | None = None
            while state is not None and not closing.is_set():
                if state != last:
                    await response.write(f"data: {json.dumps(state)}\n\n".encode())
                    last = state
                if state["status"] in TERMINAL:
                    break
                try:
                    await asyncio.wait_for(wake.wait(), STREAM_REFRESH_S)
                except TimeoutError:
                    pass
                wake.clear()
                state = await read_state(job_id)
        except ConnectionResetError:
            pass
        finally:
            watchers = self.live.watchers.get(job_id)
            if watchers is not None:
                watchers.discard(wake)
                if not watchers:
                    self.live.watchers.pop(job_id, None)
        return response

    async def original(self, request: web.Request) -> web.StreamResponse:
        job_id = await self._own_job_id(request)
        data = await self.service.results.input_file(self.member, job_id, "png")
        if isinstance(data, Refused):
            return json_error(404, said(request, GONE))
        return web.Response(body=data, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=3600"})

    async def result(self, request: web.Request) -> web.Response:
        job_id = await self._own_job_id(request)
        fmt = FORMATS.get(request.match_info["fmt"].lower())
        if fmt is None:
            return json_error(404, said(request, BAD_FORMAT))
        state = await self._state(job_id, self._member_of(request).lang)
        if state is None or state["status"] != "ready":
            status = state["status"] if state else "gone"
            if status in ("queued", "running", "finishing"):
                return json_error(409, said(request, NOT_READY))
            return json_error(404, state.get("error") or said(request, GONE) if state else said(request, GONE))
        data = await self.service.results.result_file(self.member, job_id, fmt)
        if isinstance(data, Refused):
            return json_error(REFUSAL_STATUS.get(data.reason, 404), data.text)
        disposition = "attachment" if request.query.get("download") else "inline"
        extension = OUTPUT_FORMATS[fmt].extension
        name = f"restyle-{job_id}-seed{state['seed']}.{extension}"
        if state["sweep_id"] is not None:  # named by its strength, as in the sweep's ZIP
            name = f"restyle-{state['sweep_id']}-{state['strength']:g}.{extension}"
        return web.Response(
            body=data,
            headers={
                "Content-Type": OUTPUT_FORMATS[fmt].media_type,
                "Content-Disposition": f'{disposition}; filename="{name}"',
                "Cache-Control": "private, max-age=3600",
            },
        )

    async def _own_job_id(self, request: web.Request) -> str:
        """The job id in the path, if it names one of the page member's jobs (404 otherwise: other
        members' jobs are not the page's business, not even whether they exist)."""
        job_id = request.match_info["id"]
        if JOB_ID_RE.fullmatch(job_id):
            view = await self.service.jobs.job(job_id)
            if view is not None and self._owns(view):
                return job_id
        raise ApiError(404, GONE)

    async def _own_sweep_id(self, request: web.Request) -> str:
        """The sweep id in the path (its lead job's), if it names one of the page member's sweeps."""
        sweep_id = request.match_info["id"]
        if JOB_ID_RE.fullmatch(sweep_id):
            view = await self.service.jobs.job(sweep_id)
            if view is not None and self._owns(view) and view.sweep_id == sweep_id:
                return sweep_id
        raise ApiError(404, SWEEP_GONE)

    def _owns(self, view: JobView) -> bool:
        return (view.platform, view.user_id) == (self.member.platform, self.member.user_id)

    async def _sweep_state(self, sweep_id: str, lang: str | None = None) -> dict[str, Any] | None:
        states = [await self._state(view.id, lang) for view in await self.service.jobs.sweep_jobs(sweep_id)]
        jobs = [state for state in states if state is not None]
        return sweep_state(sweep_id, jobs) if jobs else None

    async def _state(self, job_id: str, lang: str | None = None) -> dict[str, Any] | None:
        view = await self.service.jobs.job(job_id)
        if view is None or not self._owns(view):
            return None
        delivered = job_id in self.live.delivered or view.delivered
        return page_state(view, delivered=delivered, now=self.service.clock.now(), lang=lang)


def page_state(view: JobView, *, delivered: bool, now: float, lang: str | None) -> dict[str, Any]:
    """What the page shows for a job: queued, running, finishing (done, held back by the tier's
    turnaround: not `delivered` yet), ready, failed or cancelled; its words in `lang`."""
    status, eta = view.status, view.eta_s
    if status == "done":
        status = "ready"
        if not delivered:
            status = "finishing"
            eta = max(0.0, (view.deliver_after or now) - now)
    base = f"/api/jobs/{view.id}"
    tr = translator(lang)
    state: dict[str, Any] = {
        "id": view.id,
        "status": status,
        "position": view.position,
        "eta_s": round(eta, 1) if eta is not None else None,
        "progress": round(view.progress, 3) if view.progress is not None else None,
        "prompt": view.prompt,
        "negative_prompt": view.negative_prompt,
        "strength": view.strength,
        "strength_word": describe_strength(view.strength, tr),
        "seed": view.seed,
        "steps": view.steps,
        "tier": view.tier,
        "width": view.width,
        "height": view.height,
        "seconds": round(view.seconds, 2) if view.seconds is not None else None,
        "error": tr.gettext(view.error) if view.error else None,  # the engine's words are msgids
        "sweep_id": view.sweep_id,
        "original_url": f"{base}/original.png",
        "result_url": None,
        "downloads": None,
    }
    if status == "ready":
        state["result_url"] = f"{base}/result.png"
        state["downloads"] = {fmt: f"{base}/result.{fmt}?download=1" for fmt in ("png", "webp", "jpeg")}
    return state
