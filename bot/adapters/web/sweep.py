"""A strength sweep on the page: one state for its jobs together (the page shows ONE progress for
the sweep, then its pictures side by side), and its results as one ZIP of files named by strength."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from bot.chat.sweep import sweep_file_name

ACTIVE = ("queued", "running")


def sweep_state(sweep_id: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page shows for a sweep, from the page's state of each of its jobs (strength
    order): queued or running while any job is, then finishing (held back by the tier's
    turnaround), ready (at least one result), failed or cancelled."""
    active = [job for job in jobs if job["status"] in ACTIVE]
    running = [job for job in active if job["status"] == "running"]
    finishing = [job for job in jobs if job["status"] == "finishing"]
    failed = [job for job in jobs if job["status"] == "failed"]
    eta: float | None = None
    if active:
        status = "running" if running else "queued"
        etas = [job["eta_s"] for job in active if job["eta_s"] is not None]
        eta = max(etas) if etas else None  # the last job to end ends the sweep
    elif finishing:
        status = "finishing"
        eta = max((job["eta_s"] or 0.0) for job in finishing)
    elif any(job["status"] == "ready" for job in jobs):
        status = "ready"
    elif failed:
        status = "failed"
    else:
        status = "cancelled"
    ended = len(jobs) - len(active)
    # One bar for the sweep: each ended job counts whole, a running one by its own progress.
    progress = (ended + sum(job["progress"] or 0.0 for job in running)) / len(jobs) if jobs else 0.0
    queued = [job["position"] for job in active if job["status"] == "queued" and job["position"] is not None]
    lead = jobs[0]
    return {
        "id": sweep_id,
        "status": status,
        "size": len(jobs),
        "ended": ended,
        "position": min(queued) if queued and not running else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "progress": round(progress, 3),
        "running_strength": running[0]["strength"] if running else None,
        "prompt": lead["prompt"],
        "seed": lead["seed"],
        "steps": lead["steps"],
        "tier": lead["tier"],
        "width": lead["width"],
        "height": lead["height"],
        "error": failed[0]["error"] if status == "failed" else None,
        "original_url": lead["original_url"],
        "files_url": f"/api/sweeps/{sweep_id}/files.png.zip" if status == "ready" else None,
        "jobs": jobs,
    }


def sweep_zip(files: list[tuple[float, bytes]], extension: str) -> bytes:
    """The sweep's results in one download, each file named by its strength. Stored, not
    deflated: the pictures are compressed already."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for strength, data in files:
            archive.writestr(sweep_file_name(strength, extension), data)
    return buffer.getvalue()
