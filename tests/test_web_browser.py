"""End to end in headless Chromium (Debian's `chromium` package, driven by Playwright): pick a
picture, run it, compare, download — the way a person uses the page."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from bot.adapters.web import WebAdapter
from bot.app import App
from bot.config import load_config
from bot.core.types import Accepted, Member
from tests.fakes import FakeEngine, wait_until
from tests.engine_fixtures import tiny_model_dir  # noqa: F401  (a pytest fixture)

CHROMIUM = Path(os.environ.get("RESTYLE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/web_screenshot.png")
PHONE_SCREENSHOT = Path("/tmp/web_screenshot_phone.png")
# RESTYLE_DOCS_SCREENSHOTS=docs: the screenshots README shows are written there too (docs/).
DOCS = Path(os.environ["RESTYLE_DOCS_SCREENSHOTS"]) if os.environ.get("RESTYLE_DOCS_SCREENSHOTS") else None

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]  # slow: headless Chromium


def landscape(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    """A small picture with shapes, so the compare view shows something a person can judge."""
    w, h = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / h
        draw.line([(0, y), (w, y)], fill=(int(70 + 120 * t), int(130 + 80 * t), int(220 - 40 * t)))
    draw.ellipse([w * 0.65, h * 0.12, w * 0.85, h * 0.38], fill=(255, 214, 90))
    draw.polygon([(0, h * 0.75), (w * 0.3, h * 0.45), (w * 0.6, h * 0.8), (0, h)], fill=(46, 110, 70))
    draw.polygon([(w * 0.35, h), (w * 0.7, h * 0.5), (w, h * 0.7), (w, h)], fill=(30, 85, 60))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
async def running_bot(tmp_path, tiny_model_dir):
    """The whole bot as `python -m bot` runs it, on the tiny random-weight model (real diffusers,
    real from_pretrained through the app's default engine factory)."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[engine]\nmodel = "{tiny_model_dir}"\nlocal_files_only = true\ndevice = "cpu"\nsteps = 4\n'
        '[web]\nport = 0\ntier = "pro"\n'
    )
    config = load_config(config_path, env={})
    app = await App.create(config)
    await app.start()
    yield app
    await app.stop()


async def test_a_person_restyles_compares_and_downloads_in_chromium(running_bot, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    web = next(a for a in running_bot.adapters if isinstance(a, WebAdapter))
    picture = landscape(tmp_path / "landscape.png")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # (A refused request also logs "Failed to load resource"; that one is expected.)
            page.on(
                "console",
                lambda msg: errors.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text
                else None,
            )

            # Predicates are written as functions: a bare expression is eval()ed in the page,
            # which its Content-Security-Policy (rightly) forbids.
            await page.goto(web.url)
            await page.wait_for_selector("#account .badge")
            assert await page.input_value("#strength") == "0.5"

            # An empty prompt is refused with the chat's words, shown in the page.
            await page.set_input_files("#picture", str(picture))
            await page.click("#run")
            await page.wait_for_selector("#error:not([hidden])")
            assert "Please describe the new style" in await page.inner_text("#error")

            await page.fill("#prompt", "oil painting, thick brush strokes")
            await page.click("#tick-subtle")  # the labels set the slider
            assert await page.input_value("#strength") == "0.25"
            await page.focus("#strength")
            await page.keyboard.press("ArrowRight")  # and the keyboard moves it
            assert await page.input_value("#strength") == "0.3"
            await page.click("#run")

            await page.wait_for_selector("#compare-wrap:not([hidden])", timeout=30_000)
            assert await page.is_hidden("#error")
            await page.wait_for_function(
                "() => ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
            )
            clip = "getComputedStyle(document.getElementById('compare-after')).clipPath"
            assert await page.evaluate(clip) == "inset(0px 0px 0px 50%)"
            assert "strength 0.3 (subtle)" in await page.inner_text("#result-info")

            # Drag the handle to the right: more of the original shows.
            box = await page.locator("#compare").bounding_box()
            assert box is not None
            y = box["y"] + box["height"] / 2
            await page.mouse.move(box["x"] + box["width"] * 0.5, y)
            await page.mouse.down()
            await page.mouse.move(box["x"] + box["width"] * 0.8, y, steps=5)
            await page.mouse.up()
            dragged = await page.evaluate(clip)
            percent = float(dragged.split()[-1].rstrip("%)"))
            assert 75 <= percent <= 85, dragged
            line_left = await page.evaluate("document.getElementById('compare-line').getBoundingClientRect().left")
            assert abs(line_left - (box["x"] + box["width"] * percent / 100)) < 3
            # Keyboard: the compare slider is a real range input.
            await page.focus("#compare-range")
            await page.keyboard.press("Home")
            assert await page.evaluate(clip) == "inset(0px 0px 0px 0%)"
            await page.keyboard.press("End")
            await page.keyboard.press("ArrowLeft")
            assert await page.evaluate(clip) == "inset(0px 0px 0px 99%)"

            async with page.expect_download() as download_info:
                await page.click("#dl-png")
            download = await download_info.value
            assert download.suggested_filename.endswith(".png")
            data = Path(await download.path()).read_bytes()
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
            width, height = Image.open(io.BytesIO(data)).size  # as prepared: sides multiples of 8
            assert abs(width / height - 320 / 240) < 0.05

            await page.focus("#compare-range")
            await page.keyboard.press("Home")
            for _ in range(40):
                await page.keyboard.press("ArrowRight")
            await page.locator("#prompt").blur()
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            if DOCS is not None:
                await page.screenshot(path=str(DOCS / "web-compare.png"), full_page=True)

            # Stronger runs the same picture again, and the new result replaces the old one.
            first_result = await page.get_attribute("#compare-after", "src")
            await page.click('[data-change="stronger"]')
            await page.wait_for_function(
                f"() => document.getElementById('compare-after').getAttribute('src') !== {first_result!r}"
                " && !document.getElementById('compare-wrap').hidden",
                timeout=30_000,
            )
            assert "strength 0.45 (clear)" in await page.inner_text("#result-info")  # 0.3 + STRENGTH_STEP

            # A phone's width: one column, nothing wider than the screen.
            await page.set_viewport_size({"width": 390, "height": 844})
            # Laid out at the new width: the viewport has shrunk and two frames have been drawn.
            await page.wait_for_function("() => window.innerWidth === 390")
            await page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, width
            await page.screenshot(path=str(PHONE_SCREENSHOT), full_page=True)
            assert not errors, errors
        finally:
            await browser.close()


async def test_a_chat_results_compare_link_opens_its_drag_to_compare_view_in_chromium(tmp_path):
    """What a Telegram or Discord member sees behind "Compare ↗": no token, that one result."""
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[bot]\ndata_dir = "{tmp_path / "data"}"\n'
        '[web]\nport = 0\ntier = "pro"\naccess_token = "s3cret-token"\npublic_url = "https://restyle.example.org"\n'
    )
    app = await App.create(load_config(config_path, env={}), engine_factory=lambda _: FakeEngine())
    await app.start()
    try:
        await wait_until(lambda: app.health.engine_ready, what="the engine")
        web = next(a for a in app.adapters if isinstance(a, WebAdapter))
        member = Member("telegram", "1001", "Ana")
        picture = landscape(tmp_path / "landscape.png", (480, 320)).read_bytes()
        accepted = await app.service.jobs.submit(member, picture, "inverted colours strength=0.5", {})
        assert isinstance(accepted, Accepted), accepted
        await wait_until(lambda: _done(app, accepted.job_id), timeout=15, what="the result")
        links = app.service.compare_links
        assert links is not None and web.url is not None
        link = links.url(accepted.job_id, app.service.clock.now()).replace("https://restyle.example.org", web.url)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(viewport={"width": 1000, "height": 760})).new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
                await page.goto(link)
                await page.wait_for_function(
                    "() => ['compare-before', 'compare-after'].every(id => document.getElementById(id).naturalWidth > 0)"
                )
                clip = "getComputedStyle(document.getElementById('compare-after')).clipPath"
                assert await page.evaluate(clip) == "inset(0px 0px 0px 50%)"
                assert "inverted colours" in await page.inner_text("figcaption")
                await page.focus("#compare-range")
                await page.keyboard.press("Home")
                for _ in range(35):
                    await page.keyboard.press("ArrowRight")
                assert await page.evaluate(clip) == "inset(0px 0px 0px 35%)"
                # The picture keeps its own shape (compare.js reads it once loaded).
                ratio = await page.evaluate("getComputedStyle(document.getElementById('compare')).aspectRatio")
                assert ratio.replace(" ", "") in ("480/320", "3/2"), ratio
                if DOCS is not None:
                    await page.screenshot(path=str(DOCS / "compare-link.png"), full_page=True)
                assert not errors, errors
                # The token-guarded page itself is still closed to this browser.
                response = await page.goto(web.url + "/")
                assert response is not None and response.status == 401
            finally:
                await browser.close()
    finally:
        await app.stop()


async def _done(app: App, job_id: str) -> bool:
    job = await app.service.jobs.job(job_id)
    return job is not None and job.status == "done"
