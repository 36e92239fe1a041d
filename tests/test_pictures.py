"""Pictures people really upload → what the engine gets; results → bytes under a budget.
All inputs are made here with Pillow (small, fast); nothing touches torch."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image, features

from engine.pictures import (
    PictureError,
    before_after,
    before_after_file,
    encode_picture,
    open_stored,
    picture_size,
    prepare_picture,
    stored_bytes,
    sweep_sheet,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def close(pixel, expected, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def png_claiming(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header claims width x height (a decompression bomb)."""
    data = bytearray(save(Image.new("1", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    body = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = body
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + body))
    return bytes(data)


def assert_engine_ready(img: Image.Image, max_side: int = 512) -> None:
    assert img.mode == "RGB"
    assert img.width % 8 == 0 and img.height % 8 == 0
    assert min(img.size) >= 64 and max(img.size) <= max_side
    assert not img.info and not img.getexif()


# Pictures in ------------------------------------------------------------------------------------


def test_exif_rotated_jpeg_is_turned_upright():
    stored = Image.new("RGB", (80, 40), BLUE)
    stored.paste(RED, (0, 0, 40, 40))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = save(stored, "JPEG", exif=exif, quality=95)
    assert picture_size(data) == (40, 80)
    out = prepare_picture(data)
    assert out.size == (256, 512)  # portrait now: width and height swapped, then brought up
    assert close(out.getpixel((128, 20)), RED, 40)  # the stored left edge is the top
    assert close(out.getpixel((128, 490)), BLUE, 40)
    assert_engine_ready(out)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_png_is_flattened_on_white(mode):
    img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # left half fully transparent (black below)
    img.paste((0, 0, 255, 255), (32, 0, 64, 64))
    if mode == "LA":
        img = img.convert("LA")
    out = prepare_picture(save(img, "PNG"), min_side=64)
    assert out.size == (64, 64)
    assert out.getpixel((5, 5)) == WHITE
    assert out.getpixel((60, 5)) != WHITE
    assert_engine_ready(out)


def test_palette_with_transparency_is_flattened_on_white():
    img = Image.new("P", (64, 64), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (32, 0, 64, 64))
    out = prepare_picture(save(img, "PNG", transparency=0), min_side=64)
    assert out.getpixel((5, 5)) == WHITE
    assert out.getpixel((60, 5)) == RED


def test_palette_grayscale_and_one_bit_become_rgb():
    palette = Image.new("RGB", (64, 64), RED).quantize(4)
    assert palette.mode == "P"
    assert close(prepare_picture(save(palette, "PNG"), min_side=64).getpixel((3, 3)), RED, 2)
    gray = prepare_picture(save(Image.new("L", (64, 64), 100), "PNG"), min_side=64)
    assert gray.getpixel((3, 3)) == (100, 100, 100)
    bits = prepare_picture(save(Image.new("1", (64, 64), 1), "PNG"), min_side=64)
    assert bits.getpixel((3, 3)) == WHITE


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))  # red ink
    data = save(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = prepare_picture(data, min_side=64)
    assert close(out.getpixel((30, 30)), RED, 30)
    assert_engine_ready(out)


def test_sixteen_bit_png_is_scaled_not_clipped():
    img = Image.new("I;16", (64, 64), 32896)  # 128 * 257: mid grey in 16 bits
    img.paste(1028, (0, 0, 32, 64))  # 4 * 257: almost black
    data = save(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = prepare_picture(data, min_side=64)
    assert close(out.getpixel((50, 10)), (128, 128, 128), 1)  # clipping would give 255
    assert close(out.getpixel((5, 10)), (4, 4, 4), 1)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)]
    data = save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = prepare_picture(data, min_side=64)
    assert close(out.getpixel((30, 30)), RED, 2)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_gives_its_first_frame():
    frames = [Image.new("RGB", (64, 64), RED), Image.new("RGB", (64, 64), BLUE)]
    data = save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = prepare_picture(data, min_side=64)
    assert close(out.getpixel((30, 30)), RED, 2)


def test_tiny_picture_is_brought_up():
    out = prepare_picture(save(noise(20, 30), "PNG"))
    assert out.size == (256, 384)  # shorter side to min_side, aspect kept
    assert_engine_ready(out)


def test_tiny_picture_never_passes_max_side():
    out = prepare_picture(save(noise(20, 150), "PNG"), max_side=512, min_side=256)
    assert out.size == (72, 512)  # 20 x 512/150 = 68.3 → 72; bringing 20 up to 256 would need 1920


def test_huge_picture_is_brought_down():
    out = prepare_picture(save(noise(3000, 2000), "JPEG", quality=80))
    assert out.size == (512, 344)  # 512 x 341.3, rounded to a multiple of 8
    assert_engine_ready(out)


@pytest.mark.parametrize(
    "size, max_side, expected",
    [((512, 512), 512, (512, 512)), ((1000, 333), 512, (512, 168)), ((700, 700), 500, (496, 496)),
     ((300, 300), 768, (304, 304)), ((257, 255), 512, (256, 256))],
)  # fmt: skip
def test_sides_are_multiples_of_eight_within_max_side(size, max_side, expected):
    out = prepare_picture(save(Image.new("RGB", size, RED), "PNG"), max_side=max_side)
    assert out.size == expected
    assert_engine_ready(out, max_side)


def test_no_metadata_survives_preparation_or_encoding():
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.0)
    gps[3], gps[4] = "E", (13.0, 24.0, 36.0)
    data = save(noise(64, 64), "JPEG", exif=exif)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the upload really has GPS
    out = prepare_picture(data, min_side=64)
    assert not out.info and not out.getexif()
    for fmt in ("png", "jpeg", "webp"):
        encoded = encode_picture(out, fmt)
        back = Image.open(io.BytesIO(encoded))
        assert not back.getexif(), fmt
        assert "exif" not in back.info and "icc_profile" not in back.info, fmt
        assert b"PhoneMaker" not in encoded and b"Exif" not in encoded, fmt


# Refusals (before decoding pixels where possible) -----------------------------------------------


def refusal(data: bytes, **kwargs) -> str:
    with pytest.raises(PictureError) as caught:
        prepare_picture(data, **kwargs)
    return str(caught.value)


def test_refuses_empty_file():
    assert "empty" in refusal(b"")


def test_refuses_over_the_byte_limit_before_reading_it():
    message = refusal(b"\x89PNG" + bytes(31_000_000 - 4))
    assert message == "That picture is 31 MB; the limit is 20 MB."


def test_refuses_text_named_jpg_and_says_which_formats_work():
    message = refusal(b"hello, this is not a picture\n" * 10)
    assert message == (
        "That file isn't a picture I can read (PNG, JPEG, WebP or GIF). Send a photo or an image file."
    )


def test_refuses_svg_by_name():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    message = refusal(svg)
    assert "SVG" in message and "PNG, JPEG, WebP or GIF" in message


def test_refuses_heic_with_a_way_out():
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100)
    assert "HEIC" in refusal(heic)


def test_refuses_unsupported_format_pillow_could_read():
    message = refusal(save(Image.new("RGB", (64, 64)), "BMP"))
    assert "PNG, JPEG, WebP or GIF" in message


def test_refuses_truncated_jpeg():
    data = save(noise(128, 128), "JPEG", quality=90)
    message = refusal(data[: len(data) // 2])
    assert "damaged or cut short" in message


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 5000)])
def test_refuses_decompression_bombs_from_the_header(size):
    data = png_claiming(*size)
    assert len(data) < 100
    message = refusal(data)  # 400 MP trips Pillow's own guard; 50 MP ours (40 MP by default)
    assert "megapixels" in message


def test_refuses_absurd_aspect_ratio():
    message = refusal(save(Image.new("L", (1, 20000)), "PNG"), max_pixels=40_000_000)
    assert "1 × 20000" in message and "too long and thin" in message


# Pictures out ---------------------------------------------------------------------------------


def test_before_after_puts_both_side_by_side_at_the_results_height():
    original = Image.new("RGB", (100, 50), RED)
    result = Image.new("RGB", (64, 64), BLUE)
    both = before_after(original, result)
    assert both.size == (128 + 4 + 64, 64)
    assert both.getpixel((10, 10)) == RED
    assert both.getpixel((130, 10)) == (220, 220, 220)  # the divider
    assert both.getpixel((140, 10)) == BLUE


def test_before_after_file_of_two_stored_pictures_fits_the_budget_it_is_given():
    def png(img: Image.Image) -> bytes:
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()

    data = before_after_file(png(noise(256, 256)), png(noise(256, 256)), "jpeg", 30_000)
    assert data[:3] == b"\xff\xd8\xff" and len(data) <= 30_000
    with Image.open(io.BytesIO(data)) as both:
        assert both.width / both.height == pytest.approx((256 + 4 + 256) / 256, rel=0.02)  # shrunk, aspect kept


def _dark_pixels(img: Image.Image, box: tuple[int, int, int, int]) -> int:
    return sum(1 for p in img.crop(box).getdata() if max(p) < 120)


def test_a_sweep_sheet_shows_the_results_in_order_each_over_its_label():
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    results = [(label, stored_bytes(Image.new("RGB", (96, 120), c))) for label, c in zip(["0.3", "0.5", "0.7"], colours, strict=True)]
    sheet = open_stored(sweep_sheet(results))
    strip = 28  # 120 // 12 is below the smallest strip
    assert sheet.size == (3 * 96 + 2 * 4, 120 + strip)
    for i, colour in enumerate(colours):
        left = i * (96 + 4)
        assert sheet.getpixel((left + 48, 60)) == colour
        assert _dark_pixels(sheet, (left, 120, left + 96, 120 + strip)) > 10, f"no label under panel {i}"
    assert sheet.getpixel((97, 60)) == (220, 220, 220)  # the divider
    labels = [sheet.crop((i * 100, 120, i * 100 + 96, 120 + strip)).tobytes() for i in range(3)]
    assert len(set(labels)) == 3  # three different labels were drawn


def test_a_sweep_sheet_scales_panels_to_the_first_ones_height():
    results = [("a", stored_bytes(Image.new("RGB", (100, 200), RED))), ("b", stored_bytes(Image.new("RGB", (50, 100), BLUE)))]
    sheet = open_stored(sweep_sheet(results))
    assert sheet.size == (100 + 4 + 100, 200 + 28)
    assert sheet.getpixel((150, 100)) == BLUE


def test_a_sweep_sheet_of_nothing_is_a_programming_error():
    with pytest.raises(ValueError):
        sweep_sheet([])


@pytest.mark.parametrize("fmt", ["png", "jpeg", "jpg", "webp"])
def test_encode_picture_fits_a_byte_budget(fmt):
    img = noise(256, 256)
    budget = 20_000  # noise compresses badly: every format must shrink the picture to fit
    data = encode_picture(img, fmt, budget)
    assert len(data) <= budget
    back = Image.open(io.BytesIO(data))
    assert back.format == ("JPEG" if fmt == "jpg" else fmt.upper())
    assert back.width < 256 and back.width / back.height == pytest.approx(1, abs=0.02)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_encode_picture_lowers_quality_before_size(fmt):
    img = noise(128, 128)
    best = len(encode_picture(img, fmt))
    budget = best - 1
    data = encode_picture(img, fmt, budget)
    assert len(data) <= budget
    assert Image.open(io.BytesIO(data)).size == (128, 128)


def test_encode_picture_without_budget_and_unknown_format():
    img = noise(64, 64)
    assert Image.open(io.BytesIO(encode_picture(img, "png"))).size == (64, 64)
    with pytest.raises(ValueError):
        encode_picture(img, "bmp")


def test_encode_picture_refuses_an_impossible_budget():
    with pytest.raises(PictureError):
        encode_picture(noise(64, 64), "png", 50)


def test_engine_api_and_pictures_do_not_import_torch():
    code = "import sys, engine, engine.api, engine.pictures; print(sorted({'torch', 'diffusers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
