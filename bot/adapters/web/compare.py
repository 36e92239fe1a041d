"""A chat result's compare view, opened through its signed link ([web] public_url, bot/links.py).

The link is the only credential a member's browser has: it opens that finished job's page and its
two pictures, and nothing else. Served with or without the page (a chat-only deployment's web
listener serves it too); every other path keeps the page's token rules."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot.adapters.web.page_texts import PAGE_TEXTS
from bot.commands import describe_strength
from bot.core.types import JobView, Member, Refused
from bot.i18n import N_, language, translator
from bot.links import CompareLinks
from bot.service import RestyleService

JOB_ID_RE = re.compile(r"[0-9a-f]{1,40}")
# The compare page's labels, by their id in PAGE_TEXTS (the main page says the same words).
COMPARE_PAGE_WORDS = ("stage_label", "original_alt", "restyled_alt", "tag_original", "tag_restyled", "compare_label",
                      "compare_value")  # fmt: skip
COMPARE_TITLE = N_("Compare")
COMPARE_GONE = N_(
    "This compare link does not open anything (the picture is no longer kept, or the link is incomplete)."
)
COMPARE_EXPIRED = N_("This compare link has expired. The result's Side by side button still shows both pictures.")
COMPARE_ASSETS = ("style.css", "compare.js", "icon.svg")
PAGE_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _plain(status: int, text: str, request: web.Request) -> web.Response:
    """`text` (a msgid) in the language the browser asks for (Accept-Language)."""
    said = translator(request.headers.get("Accept-Language")).gettext(text)
    return web.Response(status=status, text=said + "\n", content_type="text/plain")


class CompareView:
    def __init__(
        self,
        service: RestyleService,
        links: CompareLinks,
        static_dir: Path,
        static_file: Callable[[str], web.Response],
    ) -> None:
        self.service = service
        self.links = links
        self.static_dir = static_dir
        self.static_file = static_file  # the page's own files (compare.js, style.css)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/compare/assets/{name}", self.asset)
        router.add_get("/compare/{id}", self.page)
        router.add_get("/compare/{id}/{which}.png", self.picture)

    async def page(self, request: web.Request) -> web.Response:
        job, problem = await self._linked_job(request)
        if job is None:
            return _plain(*problem, request)
        lang = language(request.headers.get("Accept-Language"))
        tr = translator(lang)
        query = request.query_string
        page = (self.static_dir / "compare.html").read_text(encoding="utf-8")
        # The page's words are the main page's (page_texts.py), in the reader's language.
        words = {name: tr.gettext(PAGE_TEXTS[name]) for name in COMPARE_PAGE_WORDS}
        for name, value in {
            "lang": lang,
            "title": tr.gettext(COMPARE_TITLE),
            **words,
            "before": f"{job.id}/original.png?{query}",
            "after": f"{job.id}/result.png?{query}",
            "prompt": job.prompt,
            "facts": tr.gettext("strength {strength:g} ({word}) · seed {seed}").format(
                strength=job.strength, word=describe_strength(job.strength, tr), seed=job.seed
            ),
        }.items():
            page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers["Cache-Control"] = "private, no-cache"
        response.headers["Content-Security-Policy"] = PAGE_POLICY
        return response

    async def picture(self, request: web.Request) -> web.Response:
        job, problem = await self._linked_job(request)
        which = request.match_info["which"]
        if job is None:
            return _plain(*problem, request)
        if which not in ("original", "result"):
            return _plain(404, COMPARE_GONE, request)
        owner = Member(job.platform, job.user_id)
        if which == "original":
            data = await self.service.results.input_file(owner, job.id, "png")
        else:
            data = await self.service.results.result_file(owner, job.id, "png")
        if isinstance(data, Refused):
            return _plain(404, COMPARE_GONE, request)
        return web.Response(body=data, headers={"Content-Type": "image/png", "Cache-Control": "private, max-age=3600"})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in COMPARE_ASSETS:
            raise web.HTTPNotFound()
        return self.static_file(name)

    async def _linked_job(self, request: web.Request) -> tuple[JobView | None, tuple[int, str]]:
        """The finished job a link names, or the status and words for why not. A link not signed
        here says only "gone", not whether such a job exists."""
        job_id = request.match_info["id"]
        if not JOB_ID_RE.fullmatch(job_id):
            return None, (404, COMPARE_GONE)
        query = request.query
        problem = self.links.problem(job_id, query.get("until", ""), query.get("sig", ""), self.service.clock.now())
        if problem == "expired":
            return None, (410, COMPARE_EXPIRED)
        job = await self.service.jobs.job(job_id) if problem is None else None
        if job is None or job.status != "done":
            return None, (404, COMPARE_GONE)
        return job, (200, "")
