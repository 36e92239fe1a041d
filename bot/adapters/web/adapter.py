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
import functools
import hashlib
import hmac
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.adapters import AdapterStartError
from bot.adapters.web.compare import JOB_ID_RE, CompareView
from bot.adapters.web.page_texts import texts_response
from bot.adapters.web.sweep import sweep_state, sweep_zip
from bot.commands import (
    FORMATS,
    OUTPUT_FORMATS,
    STRENGTH_CHANGES,
    STRENGTH_STEP,
    SWEEP_STRENGTHS,
    CommandError,
    RestyleCommand,
    check_command_length,
    describe_strength,
    parse_restyle,
)
from bot.config import Config, is_loopback
from bot.core.types import Accepted, Delivery, JobView, Member, Refused, SweepDelivery
from bot.i18n import N_, Translator, language, translator
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.service import RestyleService

log = logging.getLogger("bot.web")

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {
    "style.css": "text/css",
    "app.js": "text/javascript",
    "compare.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}
WEB_MEMBER = Member("web", "local", "Web")
COOKIE = "restyle_web"
COOKIE_MAX_AGE = 30 * 24 * 3600
# Subtler / Stronger move strength by this much (the same step as the chat buttons should use).
# Room for the form's text fields and multipart framing above the picture itself.
FORM_SLACK_BYTES = 64 * 1024
TERMINAL = ("ready", "failed", "cancelled")
# How often a live stream re-sends a waiting job's state (ETA countdown), in seconds.
STREAM_REFRESH_S = 1.0
REFUSAL_STATUS = {
    "command": 400,
    "picture": 400,
    "steps": 400,
    "quota": 429,
    "queue_limit": 429,
    "flood": 429,
    "storage": 503,
    "not_found": 404,
    "not_yours": 403,
    "rules": 400,
    "banned": 403,
    "place": 403,
    "not_admin": 403,
    "sweep": 403,
}
GONE = N_("That picture is not kept any more; pick it again and press Run.")
# The page's own words, for what chat never has to say.
NO_PICTURE = N_("Pick or drop a picture first.")
NOT_READY = N_("The result is not ready yet; it appears here as soon as it is.")
CROSS_SITE = N_("This request came from another website, so it was refused.")
NEEDS_TOKEN = N_("This page needs its access token: open it once as /?token=<your [web] access_token>.")
SLOW_UPLOAD = N_(
    "The upload took too long, so it was dropped; try again on a faster connection or with a smaller picture."
)
BROKEN_UPLOAD = N_("The upload arrived cut short or garbled; pick the picture again and press Run.")
SWEEP_GONE = N_("That sweep is not kept any more; pick the picture again and press Run.")
BAD_REQUEST_ID = N_("request_id must be 8 to 64 letters, digits, '-' or '_'.")
NOT_HERE = N_("There is nothing here.")
WRONG_METHOD = N_("That method is not allowed here.")
OUR_FAULT = N_("Something went wrong on the bot's side; try again in a moment.")
LOOPBACK_NAME = N_("Open this page as http://127.0.0.1 (or localhost).")
NOT_MULTIPART = N_("Send the picture as multipart/form-data, with the file in a field named picture.")
BAD_CHANGE = N_('change must be "again", "subtler" or "stronger".')
BAD_FORMAT = N_("Results come as .png, .webp or .jpeg.")
METRICS_NEED_TOKEN = (
    "/metrics is served beyond loopback only with a token: set [web] access_token (or RESTYLE_WEB_TOKEN) "
    "and send it as Authorization: Bearer <token>."
)
# After refusing a request whose body was not read (too big, too slow), the server still reads
# and drops what the client sends this long, so the client can see the answer; then it hangs up.
LINGER_S = 1.0
# A request id (the page makes one per press of Run): the same id again finds the same job.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")


class ApiError(Exception):
    """Answered as {"error": text} with this HTTP status."""

    def __init__(self, status: int, text: str, *, close: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.close = close  # hang up after the answer (the body was not read to its end)


class WebStartError(AdapterStartError):
    """The web server could not listen; the message says which setting to change."""


def _json_error(status: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"error": text, **extra}, status=status)


def _host_without_port(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_site_location(url: Any) -> str:
    """A redirect target on this site: the path and query of `url`, or "/" for anything a
    browser could read as another host ("//evil.example/", "/\\evil.example", "/%2F%2Fevil...")."""
    raw = url.raw_path
    decoded = url.path
    for path in (raw, decoded):
        # Browsers drop tabs and newlines from addresses and read "\\" as "/": "/\t/evil" is "//evil".
        if not path.startswith("/") or "\\" in path or any(ch < " " or ch == "\x7f" for ch in path):
            return "/"
        if path.lstrip("/") != path[1:]:  # two or more slashes at the start
            return "/"
    query = url.raw_query_string
    return raw + (f"?{query}" if query else "")


def too_big_message(size_bytes: int | None, limit_mb: float, tr: Translator) -> str:
    # (The page says the first one too, before uploading: the same words, page_texts.py.)
    if size_bytes:
        return tr.gettext("That picture is {size} MB; the most the bot takes is {mb} MB.").format(
            size=f"{size_bytes / 1_000_000:.1f}", mb=f"{limit_mb:g}"
        )
    return tr.gettext("That picture is too big; the most the bot takes is {mb} MB.").format(mb=f"{limit_mb:g}")


def _said(request: web.Request, text: str) -> str:
    """One of the page's own texts (a msgid) in the language the browser asks for."""
    return _tr(request).gettext(text)


def _tr(request: web.Request) -> Translator:
    return translator(language(request.headers.get("Accept-Language")))


def command_from_form(fields: dict[str, str]) -> RestyleCommand:
    """The prompt box goes through the chat grammar, so it may carry options too (a typed
    strength=0.8 wins over the slider); the form's own fields are checked with the same words."""
    for key in ("prompt", "strength", "seed", "steps", "no", "style"):
        check_command_length(str(fields.get(key, "")))  # each as typed, before any pattern sees it
    prompt, style = str(fields.get("prompt", "")), " ".join(str(fields.get("style", "")).split())
    # The style list's pick reads as style= in the prompt (one given in both is refused as twice).
    text = f"{prompt} style={style}" if style else prompt
    command = parse_restyle(text)
    if str(fields.get("sweep", "")).strip().lower() in ("1", "on", "true") and not command.sweep:
        # The "Try 3 strengths" box reads as strength=sweep (a strength also typed is refused as twice).
        command = parse_restyle(f"{text} strength=sweep")
    options: dict[str, Any] = {}
    for key, field in (("strength", "strength"), ("seed", "seed"), ("steps", "steps"), ("no", "negative_prompt")):
        raw = " ".join(str(fields.get(key, "")).split())
        if not raw or getattr(command, field) is not None or (key == "strength" and command.sweep):
            continue  # (a sweep tries its own strengths: the slider's is not one of them)
        if key == "no":
            raw = "“" + raw.replace("”", "'") + "”"
        options[field] = getattr(parse_restyle(f"x {key}={raw}"), field)
    return replace(command, **options)


class WebAdapter:
    """The page and its API (page=True), or only the health and metrics endpoints."""

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
        token = config.web.access_token
        self._token = token
        self._cookie_value = hashlib.sha256(f"restyle-web:{token}".encode()).hexdigest() if token else None
        self._runner: web.AppRunner | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._closing: asyncio.Event | None = None
        # Jobs delivered (or failed) in this run; the service marks them in the store just after
        # deliver_result returns, so the page must not wait for that write to show the result.
        self._delivered: OrderedDict[str, None] = OrderedDict()

    # The FrontEnd side -----------------------------------------------------------------------

    async def job_updated(self, job: JobView) -> None:
        self._wake(job.id)
        if job.sweep_id is not None:
            self._wake(job.sweep_id)  # the sweep's one stream is keyed by its lead's id

    async def deliver_result(self, delivery: Delivery) -> None:
        # The page fetches the result itself; being told is all "delivery" means here.
        self._mark_delivered(delivery.job.id)

    async def deliver_sweep(self, sweep: SweepDelivery) -> None:
        # The page shows the sweep's own results side by side (the 3-up sheet is for chats):
        # all of them at once, as soon as the whole sweep is in.
        for job in sweep.jobs:
            self._mark_delivered(job.id)

    async def deliver_failure(self, job: JobView) -> None:
        self._mark_delivered(job.id)

    def _mark_delivered(self, job_id: str) -> None:
        self._delivered[job_id] = None
        while len(self._delivered) > 10_000:
            self._delivered.popitem(last=False)
        self._wake(job_id)

    def _wake(self, job_id: str) -> None:
        for event in self._watchers.get(job_id, ()):
            event.set()

    # Start and stop --------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (tests may serve it themselves)."""
        if self._closing is None:
            self._closing = asyncio.Event()
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[self._errors, self._guard],
        )
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        if self.page:
            app.router.add_get("/", self.index)
            app.router.add_get("/static/{name}", self.static)
            app.router.add_get("/api/session", self.session)
            app.router.add_get("/api/texts", self.texts)
            app.router.add_post("/api/jobs", self.submit)
            app.router.add_get("/api/jobs/{id}", self.job_state)
            app.router.add_get("/api/jobs/{id}/events", self.events)
            app.router.add_get("/api/jobs/{id}/original.png", self.original)
            app.router.add_get("/api/jobs/{id}/result.{fmt}", self.result)
            app.router.add_post("/api/jobs/{id}/again", self.again)
            app.router.add_post("/api/jobs/{id}/cancel", self.cancel)
            app.router.add_post("/api/jobs/{id}/sweep", self.try_sweep)
            app.router.add_post("/api/jobs/{id}/keep", self.keep)
            app.router.add_get("/api/sweeps/{id}", self.sweep_view)
            app.router.add_get("/api/sweeps/{id}/events", self.sweep_events)
            app.router.add_get("/api/sweeps/{id}/files.{fmt}.zip", self.sweep_files_zip)
        if self.service.compare_links is not None:
            # Reached through a signed link from a chat result, with or without the page.
            CompareView(self.service, self.service.compare_links, STATIC_DIR, self._static_file_named).add_routes(
                app.router
            )
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
            hint = " (add ?token=<your [web] access_token> the first time)" if self._token else ""
            message = f"Open {self.url} in a browser{hint}"
            print(message, flush=True)  # stdout, so it shows whatever the log level
            log.debug("%s", message)
        else:
            log.info("health and metrics on %s (/healthz, /readyz, /metrics)", self.url)

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # live streams end, so the server can close at once
        for events in self._watchers.values():
            for event in events:
                event.set()
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
            response = _json_error(exc.status, _said(request, exc.text))
            if exc.close:
                response.force_close()
        except web.HTTPRequestEntityTooLarge:
            # aiohttp stops reading at the limit; the declared length (when sent) is the real size.
            limit = self.config.bot.max_upload_mb
            response = _json_error(413, too_big_message(request.content_length, limit, _tr(request)))
        except web.HTTPException as exc:
            if not (request.path.startswith("/api/") and exc.status >= 400):
                raise
            text = {404: NOT_HERE, 405: WRONG_METHOD}.get(exc.status)
            response = _json_error(exc.status, _said(request, text) if text else exc.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("web request %s %s failed", request.method, request.path)
            if not request.path.startswith("/api/"):
                raise
            response = _json_error(500, _said(request, OUR_FAULT))
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
            response = _json_error(413, too_big_message(declared, self.config.bot.max_upload_mb, _tr(request)))
            response.force_close()
            return response
        if request.path.startswith("/compare/") and self.service.compare_links is not None:
            # The signed link is this view's credential (checked by its handler); members who
            # open it from a chat have no token. Nothing else is reachable this way.
            return await handler(request)
        if self._token is None:
            refusal = self._loopback_only(request)
            if refusal is not None:
                return refusal
            if request.path == "/metrics" and not is_loopback(self.host):
                # Counts of jobs are nobody's business on the network without the admin's say-so.
                return _json_error(403, METRICS_NEED_TOKEN)
        else:
            given = request.query.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self._token.encode()):
                if request.method in ("GET", "HEAD"):
                    # Trade the token in the address for a cookie, and drop it from the address
                    # bar and the history.
                    rest = [(k, v) for k, v in request.query.items() if k != "token"]
                    location = _same_site_location(request.rel_url.with_query(rest))
                    response = web.Response(status=303, headers={"Location": location})
                    assert self._cookie_value is not None  # made with the token
                    response.set_cookie(
                        COOKIE, self._cookie_value, max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict", path="/"
                    )
                    return response
            elif not self._authorized(request):
                if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz", "/metrics"):
                    response = _json_error(401, _said(request, NEEDS_TOKEN))
                else:
                    response = web.Response(
                        status=401, text=_said(request, NEEDS_TOKEN) + "\n", content_type="text/plain"
                    )
                response.headers["WWW-Authenticate"] = 'Bearer realm="restyle-bot"'
                return response
            # With a token, the cookie is SameSite=Strict: other sites' requests carry no cookie.
        return await handler(request)

    def _loopback_only(self, request: web.Request) -> web.Response | None:
        """Without a token the page is only on loopback (config insists), where any web site the
        member visits could still reach it. Refuse host names other than loopback ones (a site
        pointing its own name at 127.0.0.1) and posts from other origins (spending quota)."""
        if not (self.page and is_loopback(self.host)):
            return None
        if not is_loopback(_host_without_port(request.host)):
            return _json_error(403, _said(request, LOOPBACK_NAME))
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1].lower() != request.host.lower():
                return _json_error(403, _said(request, CROSS_SITE))
        return None

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None and self._cookie_value is not None
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and hmac.compare_digest(header[7:].strip().encode(), self._token.encode()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self._cookie_value.encode())

    # Health and metrics ----------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = []
        if not getattr(self.health, "store_open", True):
            reasons.append("store closed")
        error = getattr(self.health, "engine_error", None)
        if not getattr(self.health, "runs_engine", True):
            pass  # a front-end process: the engine runs in worker processes
        elif error:
            reasons.append(f"engine failed to load: {error}")
        elif not getattr(self.health, "engine_ready", False):
            reasons.append("engine loading")
        if reasons:
            return web.Response(status=503, text="not ready: " + "; ".join(reasons) + "\n")
        return web.Response(text="ready\n")

    async def metrics(self, request: web.Request) -> web.Response:
        service = self.service
        try:
            by_status = await service.admin.jobs_by_status()
            queue_lengths = await service.admin.queue_lengths()
            running = await service.admin.running_count()
        except Exception:
            log.warning("metrics: could not count jobs in the store", exc_info=True)
            by_status, queue_lengths, running = {}, {}, 0
        metrics = service.metrics
        metrics.set_store_counts(queue_lengths=queue_lengths, jobs_by_status=by_status, running_jobs=running)
        metrics.engine_ready.set(1 if getattr(self.health, "engine_ready", False) else 0)
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    # The page ----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._static_file("index.html", "text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return self._static_file(name, STATIC_FILES[name])

    def _static_file_named(self, name: str) -> web.Response:
        return self._static_file(name, STATIC_FILES[name])

    def _static_file(self, name: str, media_type: str) -> web.Response:
        body = (STATIC_DIR / name).read_bytes()
        response = web.Response(
            body=body, content_type=media_type, charset="utf-8" if media_type.startswith("text") else None
        )
        response.headers["Cache-Control"] = "no-cache"
        if name == "index.html":
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
            )
        return response

    async def texts(self, request: web.Request) -> web.Response:
        return texts_response(request.headers.get("Accept-Language"), request.headers.get("If-None-Match"))

    async def session(self, request: web.Request) -> web.Response:
        view = await self.service.jobs.me(self.member)
        tier = self.config.tier(view.tier)
        return web.json_response(
            {
                "tier": view.tier,
                "used_today": view.used_today,
                "daily_quota": view.daily_quota,
                "max_queued": view.max_queued,
                "max_side": tier.max_side,
                "default_strength": self.config.bot.default_strength,
                "strength_step": STRENGTH_STEP,
                "sweep": tier.sweep,  # whether this tier may try several strengths at once
                "sweep_strengths": list(SWEEP_STRENGTHS),
                "styles": [
                    {"name": name, "about": style.about or style.prompt, "strength": style.strength}
                    for name, style in self.config.styles.items()
                ],
                "max_upload_mb": self.config.bot.max_upload_mb,
                "max_upload_bytes": self.max_upload_bytes,
                "active_jobs": [job.id for job in view.active_jobs],
                "engine_ready": bool(getattr(self.health, "engine_ready", False)),
            }
        )

    # Jobs ----------------------------------------------------------------------------------------

    def _member_of(self, request: web.Request) -> Member:
        """The page's member, speaking the language the browser asks for (Accept-Language)."""
        return replace(self.member, lang=language(request.headers.get("Accept-Language")))

    def _flooded(self, request: web.Request) -> web.Response | None:
        """The flood guard, for every job, again and cancel request, before its body is read."""
        refused = self.service.jobs.admit(self._member_of(request))
        return None if refused is None else _json_error(REFUSAL_STATUS["flood"], refused.text, reason="flood")

    async def submit(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        if not (
            request.content_type.startswith("multipart/") or request.content_type == "application/x-www-form-urlencoded"
        ):
            return _json_error(400, _said(request, NOT_MULTIPART))
        form = await self._read_body(request, request.post)
        request_id = request.headers.get("Idempotency-Key") or form.get("request_id") or None
        if request_id is not None and not (isinstance(request_id, str) and REQUEST_ID_RE.fullmatch(request_id)):
            return _json_error(400, _said(request, BAD_REQUEST_ID))
        member = self._member_of(request)
        tr = translator(member.lang)
        picture = form.get("picture")
        if not isinstance(picture, web.FileField):
            return _json_error(400, tr.gettext(NO_PICTURE))
        try:
            data = picture.file.read()
        finally:
            picture.file.close()
        if not data:
            return _json_error(400, tr.gettext(NO_PICTURE))
        if len(data) > self.max_upload_bytes:
            return _json_error(413, too_big_message(len(data), self.config.bot.max_upload_mb, tr))
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            command = command_from_form(fields)
        except CommandError as exc:
            return _json_error(400, exc.render(tr))
        outcome = await self.service.jobs.submit(member, data, command, {"page": True}, request_key=request_id)
        return await self._answer(outcome, member.lang)

    async def _read_body(self, request: web.Request, read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()` the request's body within body_timeout_s. A body that is too slow, cut
        short or garbled is answered with one sentence (ApiError); an upload the client gave up
        on is one INFO line (there is nobody left to answer)."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                return await read()
        except TimeoutError:
            log.info("web request %s %s dropped: its body took over %g s", request.method, request.path,
                     self.body_timeout_s)  # fmt: skip
            raise ApiError(408, SLOW_UPLOAD, close=True) from None
        except ConnectionResetError:
            log.info("web request %s %s: the client went away during the upload", request.method, request.path)
            raise ApiError(400, BROKEN_UPLOAD, close=True) from None
        except (ValueError, AssertionError, LookupError) as exc:
            # aiohttp's multipart reader: "Reading after EOF", a missing boundary, a bad header.
            log.info("web request %s %s: unreadable body (%s)", request.method, request.path, exc)
            raise ApiError(400, BROKEN_UPLOAD, close=True) from None

    async def again(self, request: web.Request) -> web.Response:
        if (flooded := self._flooded(request)) is not None:
            return flooded
        job_id = await self._own_job_id(request)
        try:
            body = await self._read_body(request, request.json) if request.can_read_body else {}
        except ApiError as exc:
            if exc.status == 400:  # not JSON: the same as no body
                body = {}
            else:
                raise
        if not isinstance(body, dict):
            body = {}
        change = str(body.get("change") or "again").lower()
        if change not in STRENGTH_CHANGES:
            return _json_error(400, _said(request, BAD_CHANGE))
        member = self._member_of(request)
        outcome = await self.service.jobs.again(member, job_id, {"page": True}, strength_delta=STRENGTH_CHANGES[change])
        return await self._answer(outcome, member.lang)

    async def _answer(self, outcome: Accepted | Refused, lang: str | None) -> web.Response:
        if isinstance(outcome, Refused):
            return _json_error(REFUSAL_STATUS.get(outcome.reason, 400), outcome.text, reason=outcome.reason)
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
            return _json_error(REFUSAL_STATUS.get(kept.reason, 404), kept.text, reason=kept.reason)
        return web.json_response({"job": await self._state(job_id, member.lang)})

    async def sweep_view(self, request: web.Request) -> web.Response:
        sweep_id = await self._own_sweep_id(request)
        return web.json_response(await self._sweep_state(sweep_id, self._member_of(request).lang))

    async def sweep_files_zip(self, request: web.Request) -> web.Response:
        sweep_id = await self._own_sweep_id(request)
        fmt = FORMATS.get(request.match_info["fmt"].lower())
        if fmt is None:
            return _json_error(404, _said(request, BAD_FORMAT))
        files = await self.service.results.sweep_files(self._member_of(request), sweep_id, fmt)
        if isinstance(files, Refused):
            return _json_error(REFUSAL_STATUS.get(files.reason, 404), files.text)
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
        self._watchers.setdefault(job_id, set()).add(wake)
        closing = self._closing
        try:
            await response.write(b"retry: 1000\n\n")
            last: dict[str, Any] | None = None
            while state is not None and not (closing and closing.is_set()):
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
            watchers = self._watchers.get(job_id)
            if watchers is not None:
                watchers.discard(wake)
                if not watchers:
                    self._watchers.pop(job_id, None)
        return response

    async def original(self, request: web.Request) -> web.StreamResponse:
        job_id = await self._own_job_id(request)
        data = await self.service.results.input_file(self.member, job_id, "png")
        if isinstance(data, Refused):
            return _json_error(404, _said(request, GONE))
        return web.Response(body=data, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=3600"})

    async def result(self, request: web.Request) -> web.Response:
        job_id = await self._own_job_id(request)
        fmt = FORMATS.get(request.match_info["fmt"].lower())
        if fmt is None:
            return _json_error(404, _said(request, BAD_FORMAT))
        state = await self._state(job_id, self._member_of(request).lang)
        if state is None or state["status"] != "ready":
            status = state["status"] if state else "gone"
            if status in ("queued", "running", "finishing"):
                return _json_error(409, _said(request, NOT_READY))
            return _json_error(404, state.get("error") or _said(request, GONE) if state else _said(request, GONE))
        data = await self.service.results.result_file(self.member, job_id, fmt)
        if isinstance(data, Refused):
            return _json_error(REFUSAL_STATUS.get(data.reason, 404), data.text)
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
            if view is not None and (view.platform, view.user_id) == (self.member.platform, self.member.user_id):
                return job_id
        raise ApiError(404, GONE)

    async def _own_sweep_id(self, request: web.Request) -> str:
        """The sweep id in the path (its lead job's), if it names one of the page member's sweeps."""
        sweep_id = request.match_info["id"]
        if JOB_ID_RE.fullmatch(sweep_id):
            view = await self.service.jobs.job(sweep_id)
            if view is not None and (view.platform, view.user_id) == (self.member.platform, self.member.user_id):
                if view.sweep_id == sweep_id:
                    return sweep_id
        raise ApiError(404, SWEEP_GONE)

    async def _sweep_state(self, sweep_id: str, lang: str | None = None) -> dict[str, Any] | None:
        states = [await self._state(view.id, lang) for view in await self.service.jobs.sweep_jobs(sweep_id)]
        jobs = [state for state in states if state is not None]
        return sweep_state(sweep_id, jobs) if jobs else None

    async def _state(self, job_id: str, lang: str | None = None) -> dict[str, Any] | None:
        """What the page shows for a job: queued, running, finishing (done, held back by the
        tier's turnaround), ready, failed or cancelled; its words in `lang`."""
        view = await self.service.jobs.job(job_id)
        if view is None or (view.platform, view.user_id) != (self.member.platform, self.member.user_id):
            return None
        status, eta = view.status, view.eta_s
        if status == "done":
            status = "ready"
            if job_id not in self._delivered and not view.delivered:
                status = "finishing"
                now = self.service.clock.now()
                eta = max(0.0, (view.deliver_after or now) - now)
        base = f"/api/jobs/{job_id}"
        tr = translator(lang)
        state: dict[str, Any] = {
            "id": job_id,
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
