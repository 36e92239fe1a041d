"""The local web page: the bot's face when no chat token is set, and /healthz, /readyz, /metrics.

One member, "web:local", whose tier comes from `[web] tier`. The page (bot/adapters/web/static)
talks to a small JSON API:

    GET  /api/session                      tier, today's quota, defaults for the form
    GET  /api/texts                        the page's own words in the browser's language (page_texts.py)
    POST /api/jobs                         multipart: picture, prompt, strength, seed, no, steps
    GET  /api/jobs/<id>                    the job's state (also streamed by .../events as SSE)
    GET  /api/jobs/<id>/original.png       the picture as the engine saw it
    GET  /api/jobs/<id>/result.<fmt>       png | webp | jpeg (?download=1 for an attachment)
    POST /api/jobs/<id>/again              {"change": "again" | "subtler" | "stronger"}
    POST /api/jobs/<id>/cancel             (a job of a strength sweep: the whole sweep)
    POST /api/jobs/<id>/sweep              "Try 3 strengths": the job's picture, prompt and seed again
    POST /api/jobs/<id>/keep               "Keep 0.5" under a sweep: that job becomes the page's result
    GET  /api/sweeps/<id>                  a sweep's state (id: its lead job's), also as SSE at .../events
    GET  /api/sweeps/<id>/files.<fmt>.zip  its results, one file per strength (restyle-0.3.png ...)

A sweep is asked for with the form's sweep=1 (or strength=sweep typed in the prompt); the answer
to it carries "sweep" (the sweep's state) beside "job" (its lead's).

Errors are {"error": "<text for the member>"}; refusals carry the service's own words, the same
as in chat. With `[web] access_token` set every request needs it: `?token=` once (it becomes a
cookie and the address loses it), the cookie, or `Authorization: Bearer <token>`.

`WebAdapter(..., page=False)` serves only /healthz, /readyz and /metrics, for chat-only
deployments; it answers to platform "web-ops", so it never claims web jobs. Either serves a chat
result's compare view through its signed link when [web] public_url is set (bot/adapters/web/compare.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.adapters import AdapterStartError
from bot.adapters.web.access import Access
from bot.adapters.web.compare import CompareView
from bot.adapters.web.errors import NOT_HERE, OUR_FAULT, WRONG_METHOD, ApiError, json_error, request_translator, said
from bot.adapters.web.health import HealthRoutes
from bot.adapters.web.jobs import JobRoutes, LiveJobs
from bot.adapters.web.page import STATIC_DIR, PageRoutes, static_file
from bot.adapters.web.uploads import FORM_SLACK_BYTES, too_big_message
from bot.config import Config
from bot.core.types import Delivery, JobView, Member, SweepDelivery
from bot.service import RestyleService

log = logging.getLogger("bot.web")

WEB_MEMBER = Member("web", "local", "Web")
# After refusing a request whose body was not read (too big, too slow), the server still reads
# and drops what the client sends this long, so the client can see the answer; then it hangs up.
LINGER_S = 1.0


class WebStartError(AdapterStartError):
    """The web server could not listen; the message says which setting to change."""


class WebAdapter:
    """The page and its API (page=True), or only the health and metrics endpoints. It puts the
    package's rooms together (bot/adapters/web/__init__.py lists them); their handlers answer."""

    def __init__(
        self,
        config: Config,
        service: RestyleService,
        health: Any,
        *,
        page: bool = True,
        host: str | None = None,
        port: int | None = None,
        body_timeout_s: float | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.health = health
        self.page = page
        self.platform = "web" if page else "web-ops"
        self.member = WEB_MEMBER
        self.host = host if host is not None else config.web.host
        self.port = port if port is not None else config.web.port
        self.url: str | None = None  # once started: the address to open (real port when port 0)
        self.max_upload_bytes = int(config.bot.max_upload_mb * 1_000_000)
        self.max_body_bytes = self.max_upload_bytes + FORM_SLACK_BYTES
        # A request body (an upload) must arrive whole within this many seconds: a client that
        # trickles bytes to hold a connection open is dropped.
        self.body_timeout_s = body_timeout_s if body_timeout_s is not None else config.web.body_timeout_s
        self.access = Access(config.web.access_token, host=self.host, page=page)
        self._runner: web.AppRunner | None = None
        self._live = LiveJobs()
        self._health_routes = HealthRoutes(service, health)
        self._page_routes = PageRoutes(config, service, health, self.member, self.max_upload_bytes)
        self._jobs = JobRoutes(
            service,
            self.member,
            self._live,
            max_upload_bytes=self.max_upload_bytes,
            max_upload_mb=config.bot.max_upload_mb,
            body_timeout_s=self.body_timeout_s,
        )

    # The FrontEnd side -----------------------------------------------------------------------

    async def job_updated(self, job: JobView) -> None:
        self._live.wake(job.id)
        if job.sweep_id is not None:
            self._live.wake(job.sweep_id)  # the sweep's one stream is keyed by its lead's id

    async def deliver_result(self, delivery: Delivery) -> None:
        # The page fetches the result itself; being told is all "delivery" means here.
        self._live.mark_delivered(delivery.job.id)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        # The page shows the sweep's own results side by side (the 3-up sheet is for chats):
        # all of them at once, as soon as the whole sweep is in.
        for job in sweep.jobs:
            self._live.mark_delivered(job.id)

    async def deliver_failure(self, job: JobView) -> None:
        self._live.mark_delivered(job.id)

    # Start and stop --------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (tests may serve it themselves)."""
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[self._errors, self._guard],
        )
        ops, page, jobs = self._health_routes, self._page_routes, self._jobs
        app.router.add_get("/healthz", ops.healthz)
        app.router.add_get("/readyz", ops.readyz)
        app.router.add_get("/metrics", ops.metrics)
        if self.page:
            app.router.add_get("/", page.index)
            app.router.add_get("/static/{name}", page.static)
            app.router.add_get("/api/session", page.session)
            app.router.add_get("/api/texts", page.texts)
            app.router.add_post("/api/jobs", jobs.submit)
            app.router.add_get("/api/jobs/{id}", jobs.job_state)
            app.router.add_get("/api/jobs/{id}/events", jobs.events)
            app.router.add_get("/api/jobs/{id}/original.png", jobs.original)
            app.router.add_get("/api/jobs/{id}/result.{fmt}", jobs.result)
            app.router.add_post("/api/jobs/{id}/again", jobs.again)
            app.router.add_post("/api/jobs/{id}/cancel", jobs.cancel)
            app.router.add_post("/api/jobs/{id}/sweep", jobs.try_sweep)
            app.router.add_post("/api/jobs/{id}/keep", jobs.keep)
            app.router.add_get("/api/sweeps/{id}", jobs.sweep_view)
            app.router.add_get("/api/sweeps/{id}/events", jobs.sweep_events)
            app.router.add_get("/api/sweeps/{id}/files.{fmt}.zip", jobs.sweep_files_zip)
        if self.service.compare_links is not None:
            # Reached through a signed link from a chat result, with or without the page.
            CompareView(self.service, self.service.compare_links, STATIC_DIR, static_file).add_routes(app.router)
        return app

    async def start(self) -> None:
        if self.page:
            await self._apply_config_tier()
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, lingering_time=LINGER_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=1.0)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise WebStartError(
                f"The web page cannot listen on {self.host}:{self.port}: {exc.strerror or exc}. "
                "Set [web] port to a free port (0 picks any), or stop what is using it."
            ) from exc
        port = self._runner.addresses[0][1] if self._runner.addresses else self.port
        shown_host = self.host
        if shown_host in ("0.0.0.0", "::", ""):
            shown_host = "127.0.0.1"
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        self.url = f"http://{shown_host}:{port}"
        if self.page:
            hint = " (add ?token=<your [web] access_token> the first time)" if self.access.token else ""
            message = f"Open {self.url} in a browser{hint}"
            print(message, flush=True)  # stdout, so it shows whatever the log level
            log.debug("%s", message)
        else:
            log.info("health and metrics on %s (/healthz, /readyz, /metrics)", self.url)

    async def stop(self) -> None:
        self._live.close()  # live streams end, so the server can close at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def open_connections(self) -> int:
        """Connections the server is still handling (tests wait for 0 before checking that a
        dropped request left nothing more behind)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def _apply_config_tier(self) -> None:
        wanted = self.config.web.tier
        view = await self.service.jobs.me(self.member)
        if view.tier != wanted:
            await self.service.jobs.set_tier(self.member, wanted, None, reason="config", changed_by="config")
            log.info("the web page's member now has the %s tier ([web] tier)", wanted)

    # Middlewares -----------------------------------------------------------------------------

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = json_error(exc.status, said(request, exc.text))
            if exc.close:
                response.force_close()
        except web.HTTPRequestEntityTooLarge:
            # aiohttp stops reading at the limit; the declared length (when sent) is the real size.
            limit = self.config.bot.max_upload_mb
            response = json_error(413, too_big_message(request.content_length, limit, request_translator(request)))
        except web.HTTPException as exc:
            if not (request.path.startswith("/api/") and exc.status >= 400):
                raise
            text = {404: NOT_HERE, 405: WRONG_METHOD}.get(exc.status)
            response = json_error(exc.status, said(request, text) if text else exc.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("web request %s %s failed", request.method, request.path)
            if not request.path.startswith("/api/"):
                raise
            response = json_error(500, said(request, OUR_FAULT))
        if not response.prepared:
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            # Said before a byte of the body is read; the connection closes after the answer.
            response = json_error(
                413, too_big_message(declared, self.config.bot.max_upload_mb, request_translator(request))
            )
            response.force_close()
            return response
        if request.path.startswith("/compare/") and self.service.compare_links is not None:
            # The signed link is this view's credential (checked by its handler); members who
            # open it from a chat have no token. Nothing else is reachable this way.
            return await handler(request)
        refusal = self.access.refusal(request)
        return refusal if refusal is not None else await handler(request)
