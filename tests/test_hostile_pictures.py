"""Pictures built to stall or swamp the bot: progressive-JPEG scan bombs, tiny files that decode
to a gigabyte, crafted EXIF and huge colour profiles; and the decode threads that keep uploads
and the engine out of each other's way. Timings are in bench/hostile_pictures.py, not here."""

from __future__ import annotations

import asyncio
import io
import logging
import random
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageCms, WebPImagePlugin, features

from bot.clock import FakeClock
from bot.config import load_config
from bot.logs import hide_secrets
from bot.decoding import BUSY, TOO_SLOW, PictureDecoder
from bot.core.types import Accepted, Member, Refused
from bot.service import RestyleService
from bot.store import Store
from bot.worker import Worker
from engine.pictures import (
    MAX_JPEG_SCANS,
    PictureError,
    decoded_pixel_limit,
    jpeg_scan_count,
    picture_size,
    prepare_picture,
)
from tests.fakes import FakeEngine, picture_bytes, wait_until
from tests.hostile import corrupt_exif, lossless_webp, progressive_jpeg, repeat_last_scan

needs_webp = pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")


def noise(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes(mode, (width, height), rng.randbytes(width * height * len(mode)))


def jpeg(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def refusal(data: bytes, **options) -> str:
    with pytest.raises(PictureError) as caught:
        prepare_picture(data, **options)
    return str(caught.value)


# Progressive-JPEG scan bombs ---------------------------------------------------------------------


def test_jpeg_with_its_last_scan_repeated_is_refused_before_decoding():
    bomb = repeat_last_scan(progressive_jpeg(noise(256, 256, "L"), quality=90), 2 * MAX_JPEG_SCANS)
    with Image.open(io.BytesIO(bomb)) as img:
        img.load()  # valid to libjpeg: without the count, it would be decoded (slowly, when big)
    message = refusal(bomb)
    assert message.startswith(f"That JPEG is saved in over {MAX_JPEG_SCANS} progressive passes")
    assert "save it again as an ordinary JPEG or as PNG" in message


def test_fewer_repeated_scans_on_a_big_frame_are_refused_too():
    """Decode time is scans x pixels: 45 scans are few for 1 MP and a stall at 25 MP."""
    bomb = repeat_last_scan(progressive_jpeg(Image.new("L", (5000, 5000), 128), quality=90), 40)
    assert jpeg_scan_count(bomb) == 46  # Pillow's grey script writes 6
    assert "46 progressive passes" in refusal(bomb)
    small = repeat_last_scan(progressive_jpeg(noise(1000, 1000, "L"), quality=90), 40)
    assert prepare_picture(small).size == (512, 512)


@pytest.mark.parametrize("mode, scans", [("RGB", 10), ("L", 6)])
def test_ordinary_progressive_jpeg_is_accepted(mode, scans):
    data = progressive_jpeg(noise(640, 480, mode), quality=85)
    assert jpeg_scan_count(data) == scans
    img = prepare_picture(data)
    assert img.mode == "RGB" and img.size == (512, 384)


def test_scan_count_walks_segments_instead_of_searching_bytes():
    """FF DA inside a comment, stuffed FF 00 and restart markers in the entropy-coded data,
    and frames after the first EOI (a phone's MPO) are no scans."""
    comment = b"\xff\xda\x00\x0c" * 5000
    baseline = jpeg(noise(256, 256), quality=95, comment=comment, restart_marker_blocks=1)
    assert baseline.count(b"\xff\xda") > 5000 and b"\xff\xd0" in baseline and b"\xff\x00" in baseline
    assert jpeg_scan_count(baseline) == 1
    progressive = progressive_jpeg(noise(256, 256), quality=95)
    assert jpeg_scan_count(progressive + progressive) == 10
    assert prepare_picture(baseline).size == (256, 256)


def test_a_jpeg_of_endless_markers_is_refused_without_walking_them_all():
    plain = jpeg(noise(64, 64), quality=90)
    flooded = plain[:2] + b"\xff\xfe\x00\x02" * 20_000 + plain[2:]  # 20,000 empty comments
    assert jpeg_scan_count(flooded) is None
    assert "damaged" in refusal(flooded)


# Decode memory ---------------------------------------------------------------------------------


@needs_webp
def test_lossless_webp_bomb_is_refused_from_its_header(monkeypatch):
    bomb = lossless_webp(6300)
    assert len(bomb) < 2000
    with Image.open(io.BytesIO(bomb)) as img:
        assert img.size == (6300, 6300)  # 39.7 MP: under the 40 MP any picture may have

    def decoded(self):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", decoded)
    message = refusal(bomb, max_side=512, max_decoded_pixels=decoded_pixel_limit(1024))
    assert message == (
        "That picture is 6300 × 6300 pixels; I can read at most 16.8 megapixels from a WebP file. "
        "Make it smaller, or send it as a JPEG."
    )


def test_decoded_pixels_follow_the_largest_tier():
    png = io.BytesIO()
    noise(1100, 1100).save(png, format="PNG")  # 1.21 MP
    assert "at most 1 megapixels from a PNG file" in refusal(png.getvalue(), max_decoded_pixels=decoded_pixel_limit(256))
    assert prepare_picture(png.getvalue(), max_decoded_pixels=decoded_pixel_limit(512)).size == (512, 512)


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_big_jpeg_decodes_reduced_instead_of_being_refused(fmt):
    """20 MP is over the 16.8 MP a PNG may have, but libjpeg decodes it at half scale or less
    (phones' MPO files too: a JPEG with more frames after it)."""
    frames = [Image.new("RGB", (5000, 4000), (30, 120, 200)), Image.new("RGB", (5000, 4000))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, quality=80, **({"save_all": True, "append_images": frames[1:]} if fmt == "MPO" else {}))
    img = prepare_picture(buffer.getvalue(), max_side=1024, max_decoded_pixels=decoded_pixel_limit(1024))
    assert img.size == (1024, 816)
    assert all(abs(a - b) <= 3 for a, b in zip(img.getpixel((5, 5)), (30, 120, 200)))  # the first frame


# Pillow's warnings and large colour profiles ------------------------------------------------------


def test_crafted_exif_is_one_log_line_not_a_warning_per_tag(caplog):
    data = jpeg(Image.new("RGB", (64, 64), (1, 2, 3)), exif=corrupt_exif(130))
    caplog.set_level(logging.INFO, logger="engine.pictures")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        assert prepare_picture(data).size == (256, 256)
        assert picture_size(data) == (64, 64)
    assert [str(w.message) for w in escaped] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "engine.pictures"]
    assert len(lines) == 2  # one per picture read
    assert lines[0].startswith("picture metadata is damaged; Pillow warned: Tag data larger than file")
    assert lines[0].endswith("(and 129 more)")


def test_pillow_debug_lines_stay_out_of_a_debug_log(caplog):
    """Pillow logs each PNG chunk and EXIF tag at DEBUG; a bot run with --log-level DEBUG must not."""
    exif = Image.Exif()
    for tag in range(0x9000, 0x9040):
        exif[tag] = "x"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", exif=exif)
    # hide_secrets sets logger levels for the whole process: put them back for later tests.
    levels = {name: logging.getLogger(name).level for name in ("PIL", "httpx")}
    caplog.set_level(logging.DEBUG)
    try:
        hide_secrets()
        prepare_picture(buffer.getvalue())
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("PIL")] == []


def test_png_with_a_large_colour_profile_is_accepted_without_it():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profile = srgb + bytes(5_000_000 - len(srgb))  # 5 MB, as big printer profiles are
    buffer = io.BytesIO()
    Image.new("RGB", (320, 256), (200, 30, 30)).save(buffer, format="PNG", icc_profile=profile)
    img = prepare_picture(buffer.getvalue())
    assert img.size == (320, 256) and "icc_profile" not in img.info
    assert img.getpixel((10, 10)) == (200, 30, 30)


# Decode threads: a time limit, a bound, and never behind the engine ---------------------------------


class GatedPrepare:
    """prepare_picture for b"slow" blocks until the gate opens; other bytes give a picture."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self, data: bytes, **options) -> Image.Image:
        self.calls += 1
        if data == b"slow":
            self.gate.wait(10)
        return Image.new("RGB", (64, 64))


async def test_decode_past_the_time_limit_is_refused_and_stuck_threads_are_bounded():
    prepare = GatedPrepare()
    decoder = PictureDecoder(threads=1, time_limit_s=0.2, wait_limit_s=0.2, prepare=prepare)
    try:
        with pytest.raises(PictureError, match=TOO_SLOW):
            await decoder.prepare(b"slow")
        # Its thread is still decoding: the next upload waits for it, then is told to retry,
        # and is never decoded (at most `threads` decodes at once, stuck ones included).
        with pytest.raises(PictureError, match=BUSY):
            await decoder.prepare(b"ordinary")
        assert prepare.calls == 1
    finally:
        prepare.gate.set()
    assert (await decoder.prepare(b"ordinary")).size == (64, 64)


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[bot]\ndata_dir = "{tmp_path / "data"}"\n')
    return path


@pytest.fixture
async def one_thread_default_pool():
    """asyncio's shared pool cut to one thread: what six scan bombs or a long batch left of it."""
    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(pool)
    yield
    pool.shutdown(wait=False)


async def open_service(tmp_path: Path, engine: FakeEngine, decoder: PictureDecoder | None = None):
    config = load_config(write_config(tmp_path), env={})
    store = await Store.open(config.bot.data_dir, config.store.url)
    service = RestyleService(config, store, FakeClock(), rng=random.Random(7), decoder=decoder)
    await service.start()
    worker = Worker(service.batches, engine)
    return service, store, worker


async def close_service(service, store, worker, task) -> None:
    service.stop_accepting()
    worker.stop()
    await service.close()
    await asyncio.wait_for(task, 5)
    await store.close()


async def test_an_upload_is_not_delayed_by_a_busy_engine(tmp_path, one_thread_default_pool):
    engine = FakeEngine(max_batch=1)
    engine.hold()
    service, store, worker = await open_service(tmp_path, engine)
    task = asyncio.create_task(worker.run())
    try:
        first = await service.jobs.submit(Member("test", "a"), picture_bytes(), "/restyle cat", {})
        assert isinstance(first, Accepted)
        await wait_until(engine.started.is_set)  # the engine holds its batch
        async with asyncio.timeout(5):
            second = await service.jobs.submit(Member("test", "b"), picture_bytes((640, 480)), "/restyle dog", {})
        assert isinstance(second, Accepted)
    finally:
        engine.gate.set()
        await close_service(service, store, worker, task)


async def test_the_engine_is_not_delayed_by_stuck_decodes(tmp_path, one_thread_default_pool):
    prepare = GatedPrepare()
    engine = FakeEngine(max_batch=1)
    service, store, worker = await open_service(tmp_path, engine, PictureDecoder(threads=2, prepare=prepare))
    try:
        queued = await service.jobs.submit(Member("test", "a"), b"ordinary", "/restyle cat", {})
        assert isinstance(queued, Accepted)
        stuck = [asyncio.create_task(service.jobs.submit(Member("test", f"s{i}"), b"slow", "/restyle x", {})) for i in range(3)]
        await wait_until(lambda: prepare.calls == 3)  # both decode threads are stuck; one upload waits
        task = asyncio.create_task(worker.run())
        await wait_until(lambda: engine.batches == [[queued.job_id]])
        await wait_until(lambda: not worker.busy)
        assert (await service.jobs.job(queued.job_id)).status == "done"
    finally:
        prepare.gate.set()
    assert all(isinstance(r, Accepted) for r in await asyncio.gather(*stuck))
    await close_service(service, store, worker, task)


async def test_a_webp_bomb_is_refused_through_the_service(tmp_path):
    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    service, store, worker = await open_service(tmp_path, FakeEngine())
    try:
        refused = await service.jobs.submit(Member("test", "a"), lossless_webp(6300), "/restyle cat", {})
        assert isinstance(refused, Refused) and refused.reason == "picture"
        assert "at most 16.8 megapixels" in refused.message
    finally:
        service.stop_accepting()
        await service.close()
        await store.close()
