"""A strength sweep on Discord: the files of its one message (the 3-up picture, or the results
themselves where it could not be drawn), the results as files named by strength (the Files
button), and which of its jobs its one status message speaks for. Plain functions and data on
discord.py's objects; it never imports the adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.chat.sweep import sweep_file_name
from bot.core.types import JobView, SweepDelivery
from engine.pictures import convert_stored

ACTIVE = ("queued", "running")


def file_budget(limit: int, count: int) -> int:
    """Bytes for each of `count` files in one message: the upload limit shared among them, less
    room for the form's overhead (the same budget as a result's three pictures)."""
    return max(64 * 1024, limit // max(1, count) - 16 * 1024)


def sweep_message_files(sweep: SweepDelivery, limit: int) -> list[tuple[str, bytes]]:
    """What the sweep's message carries: the 3-up picture as a JPEG (it is a photo, and the
    smallest for its size), or, where it could not be drawn, each done result as a PNG."""
    if sweep.sheet is not None:
        return [(f"restyle-sweep-{sweep.sweep_id}.jpg", convert_stored(sweep.sheet, "jpeg", file_budget(limit, 1)))]
    done = sweep.done
    budget = file_budget(limit, len(done))
    return [
        (sweep_file_name(job.strength, "png"), convert_stored(sweep.results[job.id], "png", budget)) for job in done
    ]


@dataclass
class SweepShown:
    """The latest view of each job of one sweep, to pick the one its single status speaks for:
    a running job before the queued ones (whose places would otherwise flicker through the
    message), the nearest queued one while none runs."""

    views: dict[str, JobView] = field(default_factory=dict)

    def speaker(self, job: JobView) -> JobView | None:
        """Take in `job`'s update; the view the status should say now, or None to leave it."""
        self.views[job.id] = job
        if job.status == "running":
            return job
        if job.status != "queued":
            return None
        # A job seen running counts as running until a later update shows more of the sweep ended.
        if any(v.status == "running" and v.sweep_ended >= job.sweep_ended for v in self.views.values()):
            return None
        queued = sorted((v for v in self.views.values() if v.status == "queued"), key=lambda v: v.strength)
        return job if queued[0].id == job.id else None
