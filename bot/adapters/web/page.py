"""The page itself: index.html and its files from static/ (no build step), its own words in the
browser's language (/api/texts, page_texts.py) and what the form starts from (/api/session)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from bot.adapters.web.page_texts import texts_response
from bot.commands import STRENGTH_STEP, SWEEP_STRENGTHS
from bot.config import Config
from bot.core.types import Member
from bot.service import RestyleService

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {
    "style.css": "text/css",
    "app.js": "text/javascript",
    "compare.js": "text/javascript",
    "icon.svg": "image/svg+xml",
}
INDEX_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def static_file(name: str, media_type: str | None = None) -> web.Response:
    """A file of static/ (one of STATIC_FILES, or index.html with its media type given)."""
    media_type = media_type or STATIC_FILES[name]
    body = (STATIC_DIR / name).read_bytes()
    response = web.Response(
        body=body, content_type=media_type, charset="utf-8" if media_type.startswith("text") else None
    )
    response.headers["Cache-Control"] = "no-cache"
    if name == "index.html":
        response.headers["Content-Security-Policy"] = INDEX_POLICY
    return response


class PageRoutes:
    """The page's files and its session; `member`: the page's one member."""

    def __init__(
        self, config: Config, service: RestyleService, health: Any, member: Member, max_upload_bytes: int
    ) -> None:
        self.config = config
        self.service = service
        self.health = health
        self.member = member
        self.max_upload_bytes = max_upload_bytes

    async def index(self, request: web.Request) -> web.StreamResponse:
        return static_file("index.html", "text/html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return static_file(name)

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
