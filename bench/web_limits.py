"""Hostile web clients against the real web page (App + WebAdapter on 127.0.0.1, FakeEngine):
how fast each is refused and how much of its body the server reads first.

    PYTHONPATH=. .venv/bin/python bench/web_limits.py [--rounds 5] [--body-timeout 2]

Figures (median and max over the rounds):
- declared 100 GB: time from the last header byte to the 413; then, for a client that streams
  the body anyway at full speed, the time until the server hangs up (bounded by LINGER_S of
  reading and dropping after the answer) and the bytes it dropped meanwhile;
- slow-loris upload (1 byte per 50 ms): time from the headers until the server hangs up
  (bounded by [web] body_timeout_s);
- a normal 64x64 upload next to four slow-loris clients: its answer time.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from bot.adapters.web.adapter import LINGER_S, WebAdapter  # noqa: E402
from bot.app import App  # noqa: E402
from bot.config import load_config  # noqa: E402
from tests.fakes import FakeEngine, picture_bytes  # noqa: E402

BOUNDARY = "XyZzy"


def head(length: int) -> bytes:
    return (f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()  # fmt: skip


async def declared_huge(host: str, port: int, declared: int = 10**11) -> tuple[float, float, int]:
    """Seconds to the 413; then, streaming the body at full speed anyway, seconds until the
    server hung up and the bytes it took (and dropped) meanwhile."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head(declared))
    await writer.drain()
    started = time.perf_counter()
    first = await reader.readline()
    answered = time.perf_counter() - started
    assert b"413" in first, first
    sent = 0
    chunk = b"0" * 262144
    streaming = time.perf_counter()
    try:
        while sent < declared:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 5)
            sent += len(chunk)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    hung_up = time.perf_counter() - streaming
    writer.close()
    return answered, hung_up, sent


async def slow_loris(host: str, port: int) -> float:
    """Seconds from the headers until the server hangs up on a 1-byte-per-50-ms upload."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head(100_000))
    await writer.drain()
    started = time.perf_counter()

    async def trickle() -> None:
        try:
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass

    sender = asyncio.create_task(trickle())
    await reader.read()  # until the server closes
    took = time.perf_counter() - started
    sender.cancel()
    writer.close()
    return took


async def normal_upload(http: aiohttp.ClientSession, url: str) -> float:
    form = aiohttp.FormData()
    form.add_field("picture", picture_bytes(), filename="in.png", content_type="image/png")
    form.add_field("prompt", "oil painting")
    started = time.perf_counter()
    async with http.post(f"{url}/api/jobs", data=form) as response:
        await response.read()
        assert response.status == 202, response.status
    return time.perf_counter() - started


def summary(values: list[float], unit: str, scale: float = 1.0) -> str:
    return f"median {statistics.median(values) * scale:.1f} {unit}, max {max(values) * scale:.1f} {unit}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--body-timeout", type=float, default=2.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-web-"))
    config_path = tmp / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp / "data"}"\n[web]\nport = 0\ntier = "max"\nbody_timeout_s = {args.body_timeout}\n'
        "[tiers.max]\ndaily_quota = 100000\nmax_queued = 1000\n"
    )
    config = load_config(config_path, env={})
    app = await App.create(config, engine_factory=lambda _: FakeEngine())
    await app.start()
    web = next(a for a in app.adapters if isinstance(a, WebAdapter))
    host, port = web.url.split("://")[1].rsplit(":", 1)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; body_timeout_s {args.body_timeout}, LINGER_S {LINGER_S}")  # fmt: skip
    try:
        answers, hang_ups, sent = [], [], []
        for _ in range(args.rounds):
            answered, hung_up, n = await declared_huge(host, int(port))
            answers.append(answered)
            hang_ups.append(hung_up)
            sent.append(n)
        print(f"declared 100 GB: 413 after {summary(answers, 'ms', 1000)} (no byte of the body read); "
              f"streamed anyway: hung up after {summary(hang_ups, 's')}, "
              f"having dropped {summary([s / 1e6 for s in sent], 'MB')} (loopback speed)")  # fmt: skip
        loris = [await slow_loris(host, int(port)) for _ in range(args.rounds)]
        print(f"slow-loris upload: dropped after {summary(loris, 's')}")
        async with aiohttp.ClientSession() as http:
            alone = [await normal_upload(http, web.url) for _ in range(args.rounds)]
            crowd = [asyncio.create_task(slow_loris(host, int(port))) for _ in range(4)]
            await asyncio.sleep(0.2)
            beside = [await normal_upload(http, web.url) for _ in range(args.rounds)]
            await asyncio.gather(*crowd)
        print(f"normal upload: alone {summary(alone, 'ms', 1000)}; beside 4 slow-loris clients {summary(beside, 'ms', 1000)}")
    finally:
        await app.stop()


if __name__ == "__main__":
    asyncio.run(main())
