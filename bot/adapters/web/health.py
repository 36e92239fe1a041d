"""The ops endpoints, served with or without the page: /healthz (the process answers), /readyz
(the store is open and, where this process runs the engine, the engine has loaded) and /metrics
(Prometheus text; who may read it is access.py's rule)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.service import RestyleService

log = logging.getLogger("bot.web")


class HealthRoutes:
    """`health`: the app's Health (store_open, runs_engine, engine_ready, engine_error)."""

    def __init__(self, service: RestyleService, health: Any) -> None:
        self.service = service
        self.health = health

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
