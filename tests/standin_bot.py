"""A real restyle-bot process with stand-ins at both ends, for scale-out tests and benchmarks.

    python -m tests.standin_bot --config C --role frontend|worker [--batch-seconds S] [--chat]
                                [--port-file F] [--deliveries F]

It runs the real App (bot.app.App.create + run_until_signalled) on the configured store; only
the engine and the chat front ends are replaced:

- a worker gets a stand-in engine (tests.fakes.FakeEngine): a fixed S seconds per batch, at
  most [engine] max_batch jobs, results are the inverted pictures;
- a front end gets, instead of the chat adapters, one small HTTP front end on 127.0.0.1 (port 0;
  the port is written to --port-file once it listens), platform "load":
    POST /submit {"user": "u1", "prompt": "..."} -> {"job": id} or {"refused": reason, "message": ...}
    POST /tier {"user": "u1", "tier": "pro"}      -> {"tier": "pro"}
    POST /settled {}                              -> {"settled": true} once no delivery is in flight
  (HTTP 200 either way; 503 with {"error": ...} when the service raised). Every delivered result
  appends one JSON line {"job": id, "pid": pid, "t": time} to --deliveries (opened, appended and
  flushed per line), so a test can count deliveries across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from aiohttp import web

from bot.config import Config, load_config
from bot.core.types import Accepted, Delivery, JobView, Member
from bot.service import RestyleService
from tests.fakes import FakeEngine, picture_bytes

log = logging.getLogger("bot.standin")
PLATFORM = "load"


class LoadFrontEnd:
    """The service's FrontEnd and the app's Adapter, driven over HTTP by a test client."""

    platform = PLATFORM

    def __init__(self, service: RestyleService, port_file: Path | None, deliveries: Path | None) -> None:
        self.service = service
        self.port_file = port_file
        self.deliveries = deliveries
        self.picture = picture_bytes((64, 64))
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/submit", self._submit)
        app.router.add_post("/tier", self._tier)
        app.router.add_post("/settled", self._settled)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        log.info("load front end listening on 127.0.0.1:%d", port)
        if self.port_file is not None:
            tmp = self.port_file.with_suffix(".tmp")
            tmp.write_text(str(port))
            tmp.replace(self.port_file)  # whole or absent: a reader never sees half a number

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            member = Member(PLATFORM, str(body["user"]))
            answer = await self.service.jobs.submit(member, self.picture, "/restyle " + str(body["prompt"]), {})
        except Exception as exc:
            log.exception("submit failed")
            return web.json_response({"error": repr(exc)}, status=503)
        if isinstance(answer, Accepted):
            return web.json_response({"job": answer.job_id})
        return web.json_response({"refused": answer.reason, "message": answer.message})

    async def _tier(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            member = Member(PLATFORM, str(body["user"]))
            view = await self.service.jobs.set_tier(member, str(body["tier"]), None, reason="load test", changed_by="test")
        except Exception as exc:
            log.exception("set_tier failed")
            return web.json_response({"error": repr(exc)}, status=503)
        return web.json_response({"tier": view.tier})

    async def _settled(self, request: web.Request) -> web.Response:
        # Every delivery this process started has ended (sent, or given up): once the database
        # says all jobs are delivered, no further send can start (a delivery lease needs
        # delivered_at IS NULL), so the deliveries file is final.
        await self.service.dispatch.wait_delivered()
        return web.json_response({"settled": True})

    async def job_updated(self, job: JobView) -> None:
        pass

    async def deliver_result(self, delivery: Delivery) -> None:
        if self.deliveries is not None:
            line = json.dumps({"job": delivery.job.id, "pid": os.getpid(), "t": time.time()})
            with open(self.deliveries, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()

    async def deliver_failure(self, job: JobView) -> None:
        log.warning("job %s failed: %s", job.id, job.error)


# ---------------------------------------------------------------- driving processes (tests, bench)

ROOT = Path(__file__).resolve().parent.parent


def write_config(
    path: Path, url: str, *, max_batch: int = 4, lease_s: float = 3, poll_s: float = 0.5,
    listener_lease_s: float = 10, extra: str = "",
) -> Path:
    """A config for the fleet: every process of it shares `url`; [bot] data_dir is per process
    (--data-dir is not a flag: each process gets its own copy of this file, see Fleet.start).
    `extra`: more tables at the end (e.g. [telegram] for processes started with chat=True)."""
    path.write_text(
        f'[store]\nurl = "{url}"\nlease_s = {lease_s}\npoll_s = {poll_s}\nlistener_lease_s = {listener_lease_s}\n'
        f"[engine]\nmax_batch = {max_batch}\n"
        "[queue]\nshutdown_grace_s = 10\n"
        "[web]\nenabled = false\n"
        "[tiers.free]\nmax_queued = 100000\ndaily_quota = 100000\nmin_turnaround_s = 0\n"
        "[tiers.pro]\nmax_queued = 100000\ndaily_quota = 100000\nmin_turnaround_s = 0\n"
        + extra
    )
    return path


class Proc:
    """One stand-in bot process; its output goes to a log file in its folder."""

    def __init__(self, folder: Path, base_config: Path, role: str, *, batch_seconds: float = 0.0, chat: bool = False) -> None:
        import subprocess

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.role = role
        self.config = folder / "config.toml"
        self.config.write_text(f'[bot]\ndata_dir = "{folder / "data"}"\n' + base_config.read_text())
        self.port_file = folder / "port"
        self.deliveries = folder / "deliveries.jsonl"
        self.log_path = folder / "out.log"
        cmd = [sys.executable, "-m", "tests.standin_bot", "--config", str(self.config), "--role", role,
               "--batch-seconds", str(batch_seconds)]
        if chat:
            cmd += ["--chat"]
        elif role != "worker":
            cmd += ["--port-file", str(self.port_file), "--deliveries", str(self.deliveries)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        env.pop("RESTYLE_STORE_URL", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_listening(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.role} did not start:\n{self.log_tail()}")

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Until `text` shows in the process's output (e.g. "the worker is taking jobs")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.role} never logged {text!r}:\n{self.log_tail()}")

    def post(self, path: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def submit(self, user: str, prompt: str, *, retry_s: float = 60) -> tuple[str | None, list[str]]:
        """Submit until accepted (or retry_s passes): (job id or None, the refusals/errors on the way).
        Floods and storage refusals are retried; a connection error too (the process may be busy)."""
        deadline = time.monotonic() + retry_s
        refusals: list[str] = []
        while True:
            try:
                status, answer = self.post("/submit", {"user": user, "prompt": prompt})
            except OSError as exc:
                status, answer = 0, {"error": repr(exc)}
            if status == 200 and "job" in answer:
                return answer["job"], refusals
            refusals.append(answer.get("refused") or answer.get("error") or str(status))
            if status == 200 and answer.get("refused") not in ("flood", "storage"):
                return None, refusals
            if time.monotonic() > deadline:
                return None, refusals
            time.sleep(0.2)

    def delivered(self) -> list[dict]:
        if not self.deliveries.exists():
            return []
        return [json.loads(line) for line in self.deliveries.read_text().splitlines() if line.strip()]

    def terminate(self, timeout: float = 20) -> int | None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self._log.close()


def job_rows(cluster, dbname: str, where: str = "TRUE") -> list[dict]:
    """Jobs as dicts (id, status, rank, seq, tier, started_at, finished_at, worker_id, platform_user_id)."""
    cols = ["id", "status", "rank", "seq", "tier", "started_at", "finished_at", "worker_id", "delivered_at"]
    out = cluster.psql(f"SELECT {', '.join(cols)} FROM jobs WHERE {where}", dbname)
    rows = []
    for line in out.splitlines():
        if not line:
            continue
        values = line.split("|")
        row = dict(zip(cols, values))
        for key in ("rank", "started_at", "finished_at", "delivered_at"):
            row[key] = float(row[key]) if row[key] else None
        row["seq"] = int(row["seq"])
        rows.append(row)
    return rows


async def _run(config: Config, args: argparse.Namespace) -> int:
    from bot.app import App

    def engine_factory(c: Config) -> FakeEngine:
        return FakeEngine(max_batch=c.engine.max_batch, seconds=args.batch_seconds)

    def adapters(c: Config, service: RestyleService, health) -> list:
        return [LoadFrontEnd(service, args.port_file, args.deliveries)]

    app = await App.create(
        config,
        role=args.role,
        engine_factory=engine_factory,
        # --chat: the real front ends the config asks for (e.g. Telegram against a fake server)
        adapters=None if args.chat else adapters if args.role != "worker" else (lambda c, s, h: []),
    )
    await app.run_until_signalled()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standin_bot")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--role", choices=("frontend", "worker", "all"), required=True)
    parser.add_argument("--batch-seconds", type=float, default=0.0, help="stand-in engine: seconds per batch")
    parser.add_argument("--port-file", type=Path, default=None)
    parser.add_argument("--deliveries", type=Path, default=None)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--chat", action="store_true", help="the configured chat front ends instead of the HTTP one")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from bot.logs import hide_secrets

    hide_secrets()
    config = load_config(args.config)
    try:
        return asyncio.run(_run(config, args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
