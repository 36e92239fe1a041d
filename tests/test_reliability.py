"""Nothing lost across crashes, restarts, faults and bad input.

Process tests run the real `python -m bot` on the tiny model, driven through the web API (the
chat front ends have their own restart tests against their fake servers)."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from bot.core.types import Accepted, Refused
from bot.store import StoreError
from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (a pytest fixture)
from tests.fakes import picture_bytes, wait_until
from tests.harness.service import FREE, PRO, Harness, make

ROOT = Path(__file__).resolve().parent.parent


# Bad input corpus ------------------------------------------------------------------------------


def _encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _bomb_png() -> bytes:
    # 30000 x 30000 one-bit pixels compress to almost nothing but decode to 900 megapixels.
    return _encoded(Image.new("1", (30000, 30000)), "PNG")


def _animated_webp() -> bytes:
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0))]
    return _encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


BAD_PICTURES = {
    "zero bytes": b"",
    "truncated jpeg": _encoded(Image.new("RGB", (256, 256), (9, 99, 199)), "JPEG")[:600],
    "decompression bomb png": _bomb_png(),
    "1x20000 strip": _encoded(Image.new("RGB", (1, 20000)), "PNG"),
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
    "text named .jpg": b"Dear diary, today I restyled a picture.\n" * 20,
}

GOOD_ODD_PICTURES = {
    "cmyk jpeg": _encoded(Image.new("CMYK", (64, 64), (0, 120, 200, 10)), "JPEG"),
    "16-bit png": _encoded(Image.new("I;16", (64, 64), 40000), "PNG"),
    "animated webp": _animated_webp(),
}


@pytest.mark.parametrize("name", BAD_PICTURES)
async def test_bad_picture_gets_a_clear_answer_and_never_reaches_the_engine(tmp_path, name):
    h = await make(tmp_path)
    h.start_worker()
    answer = await h.submit(PRO, "/restyle watercolor", picture=BAD_PICTURES[name])
    assert isinstance(answer, Refused) and answer.reason == "picture", answer
    assert answer.message.endswith(".") and "Traceback" not in answer.message and len(answer.message) < 300
    await h.drain()
    assert h.engine.batches == [] and (await h.service.jobs.me(PRO)).used_today == 0
    await h.close()


@pytest.mark.parametrize("name", GOOD_ODD_PICTURES)
async def test_odd_but_real_picture_is_converted_and_runs(tmp_path, name):
    h = await make(tmp_path)
    h.start_worker()
    answer = await h.submit(PRO, "/restyle watercolor", picture=GOOD_ODD_PICTURES[name])
    assert isinstance(answer, Accepted), answer
    await h.drain()
    assert [d.job.id for d in h.frontend.results] == [answer.job_id]
    await h.close()


BAD_PROMPTS = {"too long": "/restyle " + "very " * 120 + "long", "empty": "/restyle   ", "only options": "/restyle strength=0.5"}
ODD_PROMPTS = {
    "control characters": ("/restyle neon\x00 city\x07 at night", "neon city at night"),
    "right-to-left": ("/restyle مدينة في الليل", "مدينة في الليل"),
    "emoji": ("/restyle 🌧️ rainy night 🌃", "🌧️ rainy night 🌃"),
    "sql-looking": ("/restyle x'); DROP TABLE jobs;--", "x'); DROP TABLE jobs;--"),
}


@pytest.mark.parametrize("name", BAD_PROMPTS)
async def test_bad_prompt_is_refused_with_a_reason(tmp_path, name):
    h = await make(tmp_path)
    answer = await h.submit(PRO, BAD_PROMPTS[name])
    assert isinstance(answer, Refused) and answer.reason == "command"
    assert "/restyle" in answer.message or "500" in answer.message
    await h.close()


@pytest.mark.parametrize("name", ODD_PROMPTS)
async def test_odd_prompt_is_kept_as_written_and_stored_safely(tmp_path, name):
    text, stored = ODD_PROMPTS[name]
    h = await make(tmp_path)
    h.start_worker()
    answer = await h.submit(PRO, text)
    assert isinstance(answer, Accepted), answer
    await h.drain()
    assert [d.job.prompt for d in h.frontend.results] == [stored]
    assert (await h.store.count_by_status())["done"] == 1  # the jobs table is still there
    await h.close()


# Storage faults ------------------------------------------------------------------------------


async def test_disk_full_while_accepting_refuses_clearly_and_spends_nothing(tmp_path, monkeypatch):
    h = await make(tmp_path)

    async def disk_full(*args, **kwargs):
        raise StoreError(f"The database refused a query: {os.strerror(errno.ENOSPC)}.")

    monkeypatch.setattr(h.store, "add_job", disk_full)
    answer = await h.submit(PRO)
    assert isinstance(answer, Refused) and answer.reason == "storage"
    assert "try again" in answer.message.lower()
    assert (await h.store.count_by_status()) == {} and (await h.service.jobs.me(PRO)).used_today == 0
    await h.close()


async def test_disk_full_while_storing_a_result_never_marks_the_job_done(tmp_path, monkeypatch):
    h = await make(tmp_path)
    answer = await h.submit(PRO)
    real_finish = h.store.finish_job
    tries = []

    async def disk_full_for_results(*args, **kwargs):
        tries.append(args[0])
        raise StoreError(f"The database refused a query: {os.strerror(errno.ENOSPC)}.")

    monkeypatch.setattr(h.store, "finish_job", disk_full_for_results)
    h.service.batches.store_retry_s = (0.01, 0.01)  # it retries, then gives up and leaves the job running
    h.start_worker()
    # The job never leaves 'running' here, so wait for the worker to have given up on it.
    await wait_until(lambda: len(tries) == 3 and not h.worker.busy, what="three tries to store the result")
    assert h.frontend.results == []
    assert (await h.service.jobs.job(answer.job_id)).status == "running"  # so the next start runs it
    await h.close()

    monkeypatch.setattr(h.store, "finish_job", real_finish)
    h2 = Harness(tmp_path, clock=h.clock)
    await h2.open()
    h2.start_worker()
    await h2.drain()
    assert [d.job.id for d in h2.frontend.results] == [answer.job_id]
    await h2.close()


async def test_database_locked_by_another_program_refuses_clearly(tmp_path):
    h = await make(tmp_path)
    await h.store.db.execute("PRAGMA busy_timeout = 200")  # keep the test short (default 10 s)
    other = sqlite3.connect(h.config.bot.data_dir / "restyle.sqlite3")
    other.execute("BEGIN EXCLUSIVE")
    try:
        answer = await h.submit(PRO)
    finally:
        other.rollback()
        other.close()
    assert isinstance(answer, Refused) and answer.reason == "storage"
    assert isinstance(await h.submit(PRO), Accepted)  # and it recovers once the lock is gone
    await h.close()


# Shutdown and crash: the real process --------------------------------------------------------


class BotProcess:
    def __init__(self, tmp_path: Path, model_dir: Path) -> None:
        self.config = tmp_path / "config.toml"
        self.data = tmp_path / "data"
        self.config.write_text(
            f'[bot]\ndata_dir = "{self.data}"\n'
            f'[engine]\nmodel = "{model_dir}"\nlocal_files_only = true\ndevice = "cpu"\nmax_batch = 1\n'
            "[queue]\nshutdown_grace_s = 60\n"
            '[web]\nport = 0\ntier = "max"\n'
        )
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--config", str(self.config)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            lines.append(line)
            match = re.search(r"Open (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                break
            if not line and self.proc.poll() is not None:
                break
        assert self.url, "the bot did not start:\n" + "".join(lines)
        # The rest of its output is read as it comes (a full pipe would block the bot), for wait_output.
        self.output = lines
        self._reader = threading.Thread(target=self._read_output, args=(self.proc.stdout, lines), daemon=True)
        self._reader.start()
        self._wait_ready()

    @staticmethod
    def _read_output(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_output(self, text: str, timeout: float = 30) -> None:
        """Until the bot has printed a line containing `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in list(self.output)):
                return
            time.sleep(0.02)
        raise AssertionError(f"the bot never printed {text!r}:\n" + "".join(self.output[-20:]))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the engine never became ready")

    def submit(self, prompt: str) -> str:
        boundary = "----restyle"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n{prompt}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"picture\"; filename=\"p.png\"\r\n"
            "Content-Type: image/png\r\n\r\n"
        ).encode() + picture_bytes((256, 256)) + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            f"{self.url}/api/jobs", data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())["job"]["id"]

    def wait_status(self, job_id: str, wanted: set[str], timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status in wanted:
                return status
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never reached {wanted}")

    def wait_on_engine(self, job_id: str, timeout: float = 60) -> None:
        """Until the engine reports progress on the job. "running" in the database is not enough:
        the worker claims the next batch ahead while one runs (and gives it back at a stop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/jobs/{job_id}", timeout=10) as response:
                state = json.loads(response.read())
            if state["status"] == "running" and (state.get("progress") or 0) > 0:
                return
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never reached the engine")

    def wait_delivered(self, job_id: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            db = sqlite3.connect(self.data / "restyle.sqlite3")
            try:
                (delivered,) = db.execute("SELECT delivered_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            finally:
                db.close()
            if delivered is not None:
                return
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} was never delivered")

    def status(self, job_id: str) -> str:
        db = sqlite3.connect(self.data / "restyle.sqlite3")
        try:
            (status,) = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            db.close()
        return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)  # it ends at the pipe's end, once the process is gone
        self.proc.stdout.close()
        return code


SLOW = "slow heavy rework steps=40 strength=1.0"  # 40 UNet calls on the tiny model: a few seconds


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_lets_the_running_batch_finish_and_keeps_the_queue(tmp_path, tiny_model_dir):
    bot = BotProcess(tmp_path, tiny_model_dir)
    bot.start()
    running = bot.submit(SLOW)
    bot.wait_on_engine(running)
    waiting = bot.submit("waits for the next start")
    assert bot.stop(signal.SIGTERM) == 0
    assert bot.status(running) == "done"  # finished, not abandoned
    assert bot.status(waiting) == "queued"  # kept on disk
    bot.start()
    assert bot.wait_status(waiting, {"done"}) == "done"
    assert bot.stop() == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_second_signal_exits_at_once(tmp_path, tiny_model_dir):
    bot = BotProcess(tmp_path, tiny_model_dir)
    bot.start()
    running = bot.submit(SLOW + " seed=1")
    bot.wait_on_engine(running)
    started = time.monotonic()
    bot.proc.send_signal(signal.SIGTERM)
    bot.wait_output("signal SIGTERM: finishing the running batch")  # the first signal was taken
    assert bot.stop(signal.SIGTERM, timeout=10) != 0
    assert time.monotonic() - started < 10
    assert bot.status(running) == "running"  # left for the next start (the kill -9 test runs it)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_mid_batch_then_restart_completes_every_job_exactly_once(tmp_path, tiny_model_dir):
    bot = BotProcess(tmp_path, tiny_model_dir)
    bot.start()
    jobs = [bot.submit(SLOW + f" seed={i}") for i in range(2)]
    bot.wait_status(jobs[0], {"running"})
    bot.stop(signal.SIGKILL)
    bot.start()
    for job_id in jobs:
        assert bot.wait_status(job_id, {"done", "failed"}) == "done"
        bot.wait_delivered(job_id)  # stopping between "done" and its delivery is legal too, but not this test
    bot.stop()
    db = sqlite3.connect(bot.data / "restyle.sqlite3")
    rows = db.execute("SELECT id, status, delivered_at FROM jobs").fetchall()
    db.close()
    assert sorted(r[0] for r in rows) == sorted(jobs)
    assert all(status == "done" and delivered is not None for _, status, delivered in rows)
    db = sqlite3.connect(bot.data / "restyle.sqlite3")
    results = db.execute("SELECT job_id, COUNT(*) FROM pictures WHERE kind = 'result' GROUP BY job_id").fetchall()
    db.close()
    assert sorted(results) == sorted((j, 1) for j in jobs)  # one result each
