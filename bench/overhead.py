"""Bot overhead: from a Telegram update arriving at the (fake) Bot API server to the album being
sent (sendMediaGroup received by that server), minus engine time.

The whole bot runs in-process: App (service, SQLite in a temp dir, worker) + TelegramAdapter
(python-telegram-bot over HTTP on 127.0.0.1) against tests/fake_telegram.py, with the stand-in
FakeEngine (it inverts the picture: ~0 engine time, and the engine's own time is measured and
subtracted anyway). Members are on the pro tier (no 40 s hold). Jobs are sent one at a time and
each is delivered completely (album, buttons, status clean-up) before the next, so the figures
are latency, not queueing. Members are rotated so the flood guard (10 commands per 10 s) never
refuses one.

    PYTHONPATH=. .venv/bin/python bench/overhead.py [--jobs 200] [--sizes 1280x960 96x64]
        [--profile cprofile|pyinstrument] [--json FILE]

Sizes are the photo the member sent (a JPEG with detail, like a phone photo Telegram
recompressed). The pro tier works on up to 768 px, so a big photo is also resized.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bot.adapters.telegram.adapter import TelegramAdapter  # noqa: E402
from bot.app import App  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.core.types import Member  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.fakes import FakeEngine  # noqa: E402

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"
MEMBERS = 40  # rotated: 200 jobs -> 5 per member, far under the flood guard's 10 per 10 s
WARMUP = 10


class Trace:
    """--trace: wall time of the bot's own steps, per call (sync steps run in threads too)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.enabled = False
        self._undo: list[tuple[Any, str, Any]] = []

    def add(self, name: str, seconds: float) -> None:
        if self.enabled:
            self.samples.setdefault(name, []).append(seconds * 1000)

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        original = getattr(owner, attr)
        label = name or f"{getattr(owner, '__name__', owner)}.{attr}"
        trace = self
        if asyncio.iscoroutinefunction(original):
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    trace.add(label, time.perf_counter() - started)

            wrapper: Any = timed_async
        else:
            def timed_sync(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    trace.add(label, time.perf_counter() - started)

            wrapper = timed_sync
        self._undo.append((owner, attr, original))
        setattr(owner, attr, wrapper)

    def install(self) -> None:
        import bot.core.batches as batches
        import bot.core.jobs as jobs
        import bot.store as store
        from telegram import Bot, File

        self.wrap(jobs, "stored_bytes", "jobs.stored_bytes (thread)")
        self.wrap(batches, "open_stored_all", "batches.open_stored_all (thread)")
        self.wrap(batches, "stored_bytes", "batches.stored_bytes (thread)")
        for attr in ("account_for", "is_banned", "used_today", "member_active_jobs", "add_job", "position",
                     "claim_batch", "picture", "jobs", "job", "finish_job", "claim_delivery", "mark_delivered",
                     "add_to_reply"):  # fmt: skip
            self.wrap(store.Store, attr, f"Store.{attr} (SQLite)")
        # (claim_batch is mostly waiting for work)
        self.wrap(jobs.Jobs, "submit", "service.jobs.submit")
        self.wrap(batches.Batches, "complete", "service.batches.complete")
        for attr in ("_on_restyle", "_after_submit", "_send_result", "_finish_status", "_photo_payload"):
            self.wrap(TelegramAdapter, attr, f"telegram.{attr}")
        for attr in ("get_file", "send_message", "send_media_group", "delete_message"):
            self.wrap(Bot, attr, f"HTTP Bot.{attr}")
        self.wrap(File, "download_as_bytearray", "HTTP File.download_as_bytearray")
        # The fake Bot API server runs on the same event loop and cores: its share is not the bot's.
        import tests.fake_telegram as fake_module

        self.wrap(fake_module, "_read_params", "fake Bot API server: reading a request (not the bot's time)")
        for attr in ("_m_getFile", "_m_sendMessage", "_m_sendMediaGroup", "_m_deleteMessage", "_m_editMessageText"):
            self.wrap(FakeTelegram, attr, f"fake Bot API server: {attr[3:]} (not the bot's time)")
        self.wrap(FakeTelegram, "_download", "fake Bot API server: serving a file (not the bot's time)")

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def table(self, jobs: int) -> str:
        lines = ["| step | calls per job | median ms per call | p90 ms | ms per job (sum/jobs) |", "|---|---|---|---|---|"]
        rows = sorted(self.samples.items(), key=lambda kv: -sum(kv[1]))
        for name, values in rows:
            lines.append(f"| {name} | {len(values) / jobs:.1f} | {statistics.median(values):.2f} | "
                         f"{pct(values, 0.9):.2f} | {sum(values) / jobs:.1f} |")  # fmt: skip
        return "\n".join(lines)


TRACE = Trace()


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def photo_jpeg(width: int, height: int) -> bytes:
    """A picture with detail (a Mandelbrot crop tinted by gradients), JPEG q87 like Telegram's."""
    detail = Image.effect_mandelbrot((width, height), (-2.0, -1.2, 0.8, 1.2), 60)
    ramp = Image.linear_gradient("L").resize((width, height))
    ring = Image.radial_gradient("L").resize((width, height))
    img = Image.merge("RGB", (detail, ramp, ring))
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=87)
    return buffer.getvalue()


class TimedEngine(FakeEngine):
    """FakeEngine that records how long each job's engine call took (to subtract it)."""

    def __init__(self) -> None:
        super().__init__(max_batch=4)
        self.seconds_by_job: dict[str, float] = {}

    def run(self, jobs, on_progress=None):
        started = time.perf_counter()
        outputs = super().run(jobs, on_progress)
        spent = time.perf_counter() - started
        for job in jobs:
            self.seconds_by_job[job.job_id] = spent
        return outputs


def write_config(folder: Path, fake: FakeTelegram) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'[bot]\ndata_dir = "{folder / "data"}"\n'
        f'[telegram]\ntoken = "{TOKEN}"\nbase_url = "{fake.base_url}"\nbase_file_url = "{fake.base_file_url}"\n'
        "[web]\nenabled = false\n"
        # Production pro tier, with a quota the warm-up plus the run cannot use up.
        "[tiers.pro]\nmin_turnaround_s = 0\ndaily_quota = 100000\n"
    )
    return path


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples_ms),
        "p90": pct(samples_ms, 0.90),
        "p99": pct(samples_ms, 0.99),
        "min": min(samples_ms),
        "max": max(samples_ms),
    }


async def run_size(width: int, height: int, jobs: int, pause_s: float, profile: str | None, trace: bool) -> dict[str, Any]:
    fake = await FakeTelegram(TOKEN).start()
    tmp = tempfile.TemporaryDirectory(prefix="restyle-bench-")
    folder = Path(tmp.name)
    engine = TimedEngine()
    config = load_config(write_config(folder, fake), env={})
    app = await App.create(
        config,
        engine_factory=lambda _: engine,
        adapters=lambda c, s, h: [TelegramAdapter(c, s)],  # production defaults (edit interval etc.)
    )
    await app.start()
    await fake.wait_for("getUpdates", 1)
    while app.worker is None:
        await asyncio.sleep(0.01)

    users = [FakeTelegram.user(5000 + i, f"Member{i}") for i in range(MEMBERS)]
    for user in users:
        await app.service.jobs.set_tier(Member("telegram", str(user["id"]), user["first_name"]), "pro", None,
                                   reason="benchmark", changed_by="bench")  # fmt: skip
    picture = photo_jpeg(width, height)

    phases: dict[str, list[float]] = {"status": [], "album": [], "album_minus_engine": [], "delivered": []}
    engine_ms: list[float] = []
    profiler: Any = None

    async def one(i: int, record: bool) -> None:
        user = users[i % MEMBERS]
        photo = fake.message(user, photo=picture, push=False)  # posted earlier; not timed
        albums = len(fake.calls_to("sendMediaGroup", ok_only=True))
        deletes_edits = len(fake.calls_to("editMessageText", ok_only=True)) + len(fake.calls_to("deleteMessage", ok_only=True))
        sent_at = time.monotonic()
        request = fake.message(user, text="/restyle oil painting strength=0.5", reply_to=photo)
        [*_, album] = await fake.wait_for("sendMediaGroup", albums + 1, timeout=30)
        # Delivered completely: the buttons message went out and the status was finalised.
        await fake.wait_until(
            lambda: any(
                c.method == "sendMessage" and c.done and c.params.get("text") == "More from this picture:"
                and (c.params.get("reply_parameters") or {}).get("message_id") == request["message_id"]
                and c.params.get("chat_id") == user["id"]
                for c in fake.calls[-12:]
            ),
            timeout=30,
        )
        await app.service.dispatch.wait_delivered()
        await fake.wait_until(
            lambda: len(fake.calls_to("editMessageText", ok_only=True)) + len(fake.calls_to("deleteMessage", ok_only=True))
            > deletes_edits,
            timeout=30,
        )
        done_at = time.monotonic()
        if pause_s:
            # Idle between jobs, so the Telegram rate limiter (30 messages/s overall, ~4 per
            # job) is never what is measured.
            await asyncio.sleep(pause_s)
        status = next(
            c for c in fake.calls
            if c.method == "sendMessage" and (c.params.get("reply_parameters") or {}).get("message_id") == request["message_id"]
            and c.params.get("chat_id") == user["id"]
        )  # fmt: skip
        if not record:
            return
        job_id = next(k for k in reversed(engine.seconds_by_job))  # the one job since the last
        spent_ms = engine.seconds_by_job[job_id] * 1000
        engine_ms.append(spent_ms)
        phases["status"].append((status.at - sent_at) * 1000)
        phases["album"].append((album.at - sent_at) * 1000)
        phases["album_minus_engine"].append((album.at - sent_at) * 1000 - spent_ms)
        phases["delivered"].append((done_at - sent_at) * 1000)

    try:
        for i in range(WARMUP):
            await one(i, record=False)
        if profile == "cprofile":
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        elif profile == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")
            profiler.start()
        if trace:
            TRACE.samples.clear()
            TRACE.enabled = True
        started = time.perf_counter()
        for i in range(jobs):
            await one(WARMUP + i, record=True)
        wall = time.perf_counter() - started
        TRACE.enabled = False
        if profile == "cprofile":
            import pstats

            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
            stats.print_stats(45)
            out.write("\n--- by own time ---\n")
            stats.sort_stats("tottime").print_stats(30)
            print(out.getvalue())
        elif profile == "pyinstrument":
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
    finally:
        await app.stop()
        await fake.close()
        tmp.cleanup()
    return {
        "trace": TRACE.table(jobs) if trace else None,
        "size": f"{width}x{height}",
        "jobs": jobs,
        "photo_bytes": len(picture),
        "wall_s": wall,
        "engine_ms": summary(engine_ms),
        **{name: summary(values) for name, values in phases.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["1280x960", "96x64"], help="photo sizes, WxH")
    parser.add_argument("--pause", type=float, default=0.15, help="idle seconds between jobs (default 0.15)")
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument"], help="profile the event loop's thread")
    parser.add_argument("--trace", action="store_true", help="time the bot's steps (threads included) per job")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    print(f"machine: {machine()}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"jobs: {args.jobs} per size, one at a time ({args.pause:g} s idle between), after {WARMUP} warm-up jobs; "
          "pro tier; FakeEngine", flush=True)  # fmt: skip
    if args.trace:
        TRACE.install()
    results = []
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        started = time.perf_counter()
        result = asyncio.run(run_size(width, height, args.jobs, args.pause, args.profile, args.trace))
        result["total_s"] = time.perf_counter() - started
        results.append(result)
        print(f"  {size}: done in {result['total_s']:.1f} s", flush=True)

    print()
    print("| photo sent | update → status msg p50 (p99) | update → album p50 (p99) | album minus engine p50 / p90 / p99 (max) | update → fully delivered p50 (p99) | engine p50 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        a = r["album_minus_engine"]
        print(
            f"| {r['size']} JPEG, {r['photo_bytes'] / 1000:.0f} kB "
            f"| {r['status']['p50']:.1f} ({r['status']['p99']:.1f}) ms "
            f"| {r['album']['p50']:.1f} ({r['album']['p99']:.1f}) ms "
            f"| **{a['p50']:.1f}** / {a['p90']:.1f} / **{a['p99']:.1f}** ({a['max']:.1f}) ms "
            f"| {r['delivered']['p50']:.1f} ({r['delivered']['p99']:.1f}) ms "
            f"| {r['engine_ms']['p50']:.2f} ms |"
        )
    for r in results:
        if r["trace"]:
            print(f"\nwhere the time goes, {r['size']} photo (steps overlap; the critical path is described in bench/README.md):")
            print(r["trace"])
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "date": datetime.now(timezone.utc).isoformat(),
                                         "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
