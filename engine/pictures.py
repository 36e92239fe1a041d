"""Pictures in and out: what people really upload, made into what the engine wants, and results
encoded under a platform's byte limit. Pillow only (no torch), so the bot's core can import it.

Every refusal is a PictureError whose message is one or two sentences for a chat member.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from typing import cast

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

log = logging.getLogger("engine.pictures")


def N_(text: str) -> str:  # noqa: N802  (gettext's name: marks a text for bot/i18n.py's extractor)
    return text


NOT_A_PICTURE = N_("That file isn't a picture I can read (PNG, JPEG, WebP or GIF). Send a photo or an image file.")
READABLE = ("PNG", "JPEG", "WEBP", "GIF")  # Pillow's format ids (JPEG covers phones' MPO files)
MAX_ASPECT = 8  # longer side / shorter side
LIGHT_GREY = (220, 220, 220)
QUALITIES = (95, 90, 85, 80, 75, 70, 60, 50, 40)  # JPEG/WebP, best first
PNG_LEVELS = (6, 9)  # zlib levels: the usual, then the hardest
SHRINK = 0.8  # per step when a picture must get smaller to fit a byte budget
MIN_ENCODE_SIDE = 16  # below this, give up on a byte budget
# Progressive JPEG: libjpeg entropy-decodes every scan over the whole frame, whatever draft()
# asks for, so decode time grows with scans x pixels (~1 ms per scan per megapixel here): a
# 36 MP frame with its last scan repeated 1,700 times is 240 KB and a minute of CPU. Encoders
# write 6 (libjpeg, grey) to 10 (libjpeg, colour) scans, mozjpeg about a dozen, Photoshop 3-5.
MAX_JPEG_SCANS = 100  # ten times what an encoder writes; NVIDIA's nvImageCodec refuses past 256
MAX_SCAN_PIXELS = 1_000_000_000  # scans x frame pixels: 25 scans at 40 MP, about a second
# A JPEG walked past this many markers is not one an encoder wrote (normal files have < 100;
# a 20 MB XMP block in 64 KB pieces is 300); walking further would cost Python time per marker.
MAX_JPEG_MARKERS = 10_000
# PNG, WebP and GIF decode at full size (JPEG can reduce while decoding). Anything over four
# times the largest tier's working side is thrown away by the resize anyway; see
# decoded_pixel_limit.
DECODE_SIDE_FACTOR = 4


class PictureError(ValueError):
    """A picture we won't take (or can't send); the message is written for a chat member.
    `template` (an English text marked with N_) and `params` let the bot say it in the member's
    language (the engine knows nothing of languages); str() is the English sentence."""

    def __init__(self, template: str, **params: object) -> None:
        self.template = template
        self.params = params
        super().__init__(template.format(**params) if params else template)


def _mb(n: int) -> str:
    """31_000_000 -> '31 MB', 20_400_000 -> '20.4 MB'."""
    return f"{n / 1_000_000:.1f}".removesuffix(".0") + " MB"


def _sniff(data: bytes) -> str | None:
    """Name formats people send that Pillow can't read, to say something better than 'unknown'."""
    head = data[:64]
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "AVIF"
    text = data[:1024].lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def decoded_pixel_limit(largest_max_side: int, max_pixels: int = 40_000_000) -> int:
    """Pixels one decode may hold in memory, from the largest working side any tier has: four
    times that side squared (1024 -> 16.8 MP, ~67 MB as RGBA), never above max_pixels. A 4K
    screenshot (8.3 MP) fits; a 1.6 KB lossless WebP of 6300 x 6300 (~1 GB decoded) does not."""
    return min(max_pixels, (DECODE_SIDE_FACTOR * largest_max_side) ** 2)


# A marker is 0xFF then a byte other than 0x00 (a stuffed 0xFF inside entropy-coded data), 0xFF
# (fill before a marker) or 0xD0-0xD7 (restart markers, which sit inside a scan and carry no
# length). libjpeg finds markers the same way, inside scans and between segments alike. Two
# fixed bytes: the search is linear and runs in C over the entropy-coded data.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_SOS, _EOI, _SOI, _TEM = 0xDA, 0xD9, 0xD8, 0x01


def jpeg_scan_count(data: bytes, stop_after: int = MAX_JPEG_SCANS) -> int | None:
    """How many scans (SOS segments) libjpeg would decode in this JPEG, counting at most
    stop_after + 1; None when it has more than MAX_JPEG_MARKERS markers.

    Walks the segment structure: a segment's payload is skipped by its length (so an EXIF
    thumbnail or a comment full of FF DA bytes counts nothing) and entropy-coded data is searched
    for the next real marker, up to the first EOI (a phone's MPO frames after it are never decoded)."""
    scans = 0
    markers = 0
    pos = 2  # after SOI
    while scans <= stop_after:
        found = _JPEG_MARKER.search(data, pos)
        if found is None:
            break
        markers += 1
        if markers > MAX_JPEG_MARKERS:
            return None
        start = found.start()
        marker = data[start + 1]
        if marker == _EOI:
            break
        if marker in (_SOI, _TEM):  # no length
            pos = start + 2
            continue
        if start + 4 > len(data):
            break
        length = int.from_bytes(data[start + 2 : start + 4], "big")
        if length < 2:
            break  # libjpeg stops here with an error
        if marker == _SOS:
            scans += 1
        pos = start + 2 + length  # after an SOS header: the scan's entropy-coded data
    return scans


def _check_jpeg_scans(data: bytes, width: int, height: int) -> None:
    scans = jpeg_scan_count(data)
    if scans is None:
        raise PictureError(DAMAGED)
    if scans > MAX_JPEG_SCANS or scans * width * height > MAX_SCAN_PIXELS:
        if scans > MAX_JPEG_SCANS:
            raise PictureError(
                N_("That JPEG is saved in over {count} progressive passes, far more than cameras and editors write, "
                   "and would take too long to read; save it again as an ordinary JPEG or as PNG and send it again."),
                count=MAX_JPEG_SCANS,
            )  # fmt: skip
        raise PictureError(
            N_("That JPEG is saved in {count} progressive passes, far more than cameras and editors write, "
               "and would take too long to read; save it again as an ordinary JPEG or as PNG and send it again."),
            count=scans,
        )  # fmt: skip


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _without_png_chunk(data: bytes, kind: bytes) -> bytes | None:
    """The PNG without its `kind` chunks, or None when it has none (or isn't a PNG)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pieces = [_PNG_SIGNATURE]
    pos, dropped = len(_PNG_SIGNATURE), False
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length  # length, type, data, CRC
        if data[pos + 4 : pos + 8] == kind:
            dropped = True
        else:
            pieces.append(data[pos:end])
        pos = end
    pieces.append(data[pos:])
    return b"".join(pieces) if dropped else None


# warnings.catch_warnings swaps process-wide state (Python < 3.14 has no per-thread warning
# filters): two decode threads inside it at once can leave a recording hook installed for good.
# So decode threads take turns for the header and EXIF steps (milliseconds); pixels decode
# outside the lock. Another library's catch_warnings in another thread at that instant can
# still interleave with ours: the window is those milliseconds.
_WARNINGS_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_warnings_logged() -> Iterator[None]:
    """Collect what Pillow warns while reading a picture's header and metadata (a crafted EXIF
    block gives one warning per tag: 100+ lines on stderr) and log one line for the picture."""
    caught: list[warnings.WarningMessage] = []
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # every one, so a picture's count is its own
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check pixels ourselves
            yield
    finally:
        if caught:
            more = f" (and {len(caught) - 1} more)" if len(caught) > 1 else ""
            log.info("picture metadata is damaged; Pillow warned: %s%s", str(caught[0].message)[:200], more)


DAMAGED = N_("That picture is damaged or cut short (perhaps the upload didn't finish); send it again.")


def _open(data: bytes, max_bytes: int, max_pixels: int) -> tuple[Image.Image, int | None]:
    """Open (headers only) and run every check that needs no pixels. Returns the image and its
    EXIF orientation (read here, where Pillow's warnings about EXIF are collected)."""
    if not data:
        raise PictureError(N_("That file is empty. Send a photo or an image file (PNG, JPEG, WebP or GIF)."))
    if len(data) > max_bytes:
        raise PictureError(
            N_("That picture is {size}; the limit is {limit}."), size=_mb(len(data)), limit=_mb(max_bytes)
        )
    with _pillow_warnings_logged():
        img = _open_image(data, max_pixels)
        orientation = _orientation(img)
    width, height = img.size
    if width < 1 or height < 1:
        raise PictureError(NOT_A_PICTURE)
    if width * height > max_pixels:
        raise _too_many_pixels((width, height), max_pixels)
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise PictureError(
            N_("That picture is {width} × {height} pixels, too long and thin to restyle. "
               "Crop it so one side is at most {aspect} times the other."),
            width=width, height=height, aspect=MAX_ASPECT,
        )  # fmt: skip
    if img.format in ("JPEG", "MPO"):
        _check_jpeg_scans(data, width, height)
    return img, orientation


def _open_image(data: bytes, max_pixels: int) -> Image.Image:
    try:
        try:
            return Image.open(io.BytesIO(data), formats=READABLE)
        except ValueError:
            # Pillow refuses a PNG colour profile over 1 MB unpacked (PngImagePlugin.MAX_TEXT_CHUNK,
            # a guard against zlib bombs in text chunks). Large profiles are real (printer LUTs)
            # and we drop profiles anyway: read the picture without it rather than refuse it.
            # Raising the limit instead would raise it for every text chunk in every thread.
            stripped = _without_png_chunk(data, b"iCCP")
            if stripped is None:
                raise
            return Image.open(io.BytesIO(stripped), formats=READABLE)
    except Image.DecompressionBombError:
        raise _too_many_pixels(None, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        kind = _sniff(data)
        if kind == "HEIC":
            raise PictureError(
                N_(
                    "That's a HEIC photo, which I can't read. Send it as a photo (not as a file), or save it as JPEG first."
                )
            ) from exc
        if kind:
            raise PictureError(
                N_(
                    "That's an {kind} file, which I can't read. Send a photo or an image file (PNG, JPEG, WebP or GIF)."
                ),
                kind=kind,
            ) from exc
        raise PictureError(NOT_A_PICTURE) from exc


def _check_decoded_pixels(img: Image.Image, limit: int) -> None:
    """After draft(): img.size is what will be decoded (a JPEG's reduced size, else the full one)."""
    width, height = img.size
    if width * height <= limit:
        return
    mp = f"{limit / 1_000_000:.1f}".removesuffix(".0")
    if img.format in ("JPEG", "MPO"):
        raise _too_many_pixels(img.size, limit)
    kind = {"WEBP": "WebP"}.get(str(img.format), str(img.format))
    raise PictureError(
        N_("That picture is {width} × {height} pixels; I can read at most {mp} megapixels from a "
           "{kind} file. Make it smaller, or send it as a JPEG."),
        width=width, height=height, mp=mp, kind=kind,
    )  # fmt: skip


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> PictureError:
    mp = f"{max_pixels / 1_000_000:g}"
    if size is None:
        return PictureError(N_("That picture has far too many pixels; the limit is {mp} megapixels."), mp=mp)
    return PictureError(
        N_("That picture is {width} × {height} pixels; the limit is {mp} megapixels."),
        width=size[0],
        height=size[1],
        mp=mp,
    )


def _orientation(img: Image.Image) -> int | None:
    """EXIF orientation (1-8; Pillow also reads XMP's tiff:Orientation), None when absent or broken."""
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block must not refuse a good picture
        return None
    return orientation if isinstance(orientation, int) else None


def _oriented_size(size: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """The size as people see it: EXIF orientations 5 to 8 swap width and height."""
    w, h = size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


# What ImageOps.exif_transpose does for each orientation; done here with the orientation read
# once in _open, so the EXIF block is not parsed (and warned about) a second time.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def picture_size(data: bytes, *, max_bytes: int = 20_000_000, max_pixels: int = 40_000_000) -> tuple[int, int]:
    """Width and height as shown (EXIF orientation applied), read from the header only."""
    img, orientation = _open(data, max_bytes, max_pixels)
    with img:
        return _oriented_size(img.size, orientation)


def _target_size(width: int, height: int, max_side: int, min_side: int) -> tuple[int, int]:
    """Longest side at most max_side; shorter side brought up to min_side where that allows;
    both sides multiples of 8, at least 64."""
    min_side = min(min_side, max_side)
    scale = 1.0
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
    elif min(width, height) < min_side:
        scale = min(min_side / min(width, height), max_side / max(width, height))
    cap = max(64, max_side // 8 * 8)  # rounding to 8 must not push the long side past max_side

    def side(n: int) -> int:
        return min(cap, max(64, round(n * scale / 8) * 8))

    return side(width), side(height)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB: transparency flattened on white, 16-bit scaled (not clipped),
    embedded colour profiles (CMYK, Display P3) converted to sRGB where Pillow can."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale (PNG gives "I;16" or "I" holding 0..65535): scale into 0..255.
        img = img.convert("I")
        _, hi = cast(tuple[float, float], img.getextrema())  # one band: (lowest, highest)
        top = 255 if hi <= 255 else 65535 if hi <= 65535 else hi
        img = img.point(lambda v: v * (255 / top)).convert("L")
        mode = "L"
    elif mode == "F":
        _, hi = cast(tuple[float, float], img.getextrema())  # one band: (lowest, highest)
        top = 1.0 if hi <= 1.0 else 255.0 if hi <= 255 else 65535.0 if hi <= 65535 else hi
        img = img.point(lambda v: v * (255 / top)).convert("L")
        mode = "L"

    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat

    icc = img.info.get("icc_profile")
    if icc and mode in ("RGB", "CMYK"):
        converted = _icc_to_srgb(img, icc)
        if converted is not None:
            return converted
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise PictureError(NOT_A_PICTURE) from exc


def _icc_to_srgb(img: Image.Image, icc: bytes) -> Image.Image | None:
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(img, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # no littlecms, a broken profile: plain conversion is close enough
        return None


def _fresh(img: Image.Image) -> Image.Image:
    """A new RGB image with the same pixels and no metadata at all (EXIF, GPS, ICC, text)."""
    out = Image.new("RGB", img.size)
    out.paste(img.convert("RGB") if img.mode != "RGB" else img)
    return out


def prepare_picture(
    data: bytes,
    *,
    max_side: int = 512,
    min_side: int = 256,
    max_bytes: int = 20_000_000,
    max_pixels: int = 40_000_000,
    max_decoded_pixels: int | None = None,
) -> Image.Image:
    """An upload made ready for the engine: RGB, upright, no metadata, longest side <= max_side,
    shorter side brought up towards min_side, aspect kept, both sides multiples of 8 (>= 64).

    Raises PictureError (a sentence for the member) for anything we won't take; size, format,
    pixel count, aspect and a JPEG's scan count are checked from the header before any pixels
    are decoded. max_pixels bounds the picture as stored; max_decoded_pixels (default: the same)
    what one decode may hold in memory: a JPEG counts at the reduced size libjpeg decodes it at,
    other formats at full size (see decoded_pixel_limit)."""
    img, orientation = _open(data, max_bytes, max_pixels)
    try:
        width, height = _oriented_size(img.size, orientation)
        target = _target_size(width, height, max_side, min_side)
        img.seek(0)  # animated GIF/WebP, a phone's MPO: the first frame
        if img.format in ("JPEG", "MPO") and img.mode in ("RGB", "L", "CMYK"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target.
            scale = max(target[0] / width, target[1] / height)
            img.draft(img.mode, (max(1, int(img.size[0] * scale) + 1), max(1, int(img.size[1] * scale) + 1)))
        _check_decoded_pixels(img, max_decoded_pixels or max_pixels)
        img.load()
    except PictureError:  # a ValueError too: must not become "damaged"
        raise
    except Image.DecompressionBombError:
        raise _too_many_pixels(None, max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise PictureError(DAMAGED) from exc
    method = _UPRIGHT.get(orientation or 1)
    upright = img.transpose(method) if method is not None else img
    rgb = _to_rgb(upright)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return _fresh(rgb)


def before_after(original: Image.Image, result: Image.Image, divider: int = 4) -> Image.Image:
    """Original and result side by side at the result's height, a thin light-grey line between."""
    height = result.height
    width = max(1, round(original.width * height / original.height))
    left = original.convert("RGB")
    if left.size != (width, height):
        left = left.resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width + divider + result.width, height), LIGHT_GREY)
    canvas.paste(left, (0, 0))
    canvas.paste(result.convert("RGB"), (width + divider, 0))
    return canvas


def before_after_file(original: bytes, result: bytes, fmt: str = "jpeg", max_bytes: int | None = None) -> bytes:
    """The before/after picture of two encoded pictures (a stored job's input and result), encoded
    as `fmt` under `max_bytes`: one picture a chat can show, where two would be two messages."""
    with Image.open(io.BytesIO(original)) as before, Image.open(io.BytesIO(result)) as after:
        both = before_after(before, after)
    return encode_picture(both, fmt, max_bytes)


DARK_GREY = (40, 40, 40)
SHEET_LABEL_SHARE = 12  # the label strip is 1/12 of a panel's height (at least MIN_LABEL_STRIP px)
MIN_LABEL_STRIP = 28


def sweep_sheet(results: list[tuple[str, bytes]], divider: int = 4) -> bytes:
    """One picture of a strength sweep: the results side by side in the order given, each over its
    label (e.g. "0.3"), so a member sees which strength did what before picking one. Panels are
    scaled to the first one's height (a sweep's results share one size). Returns the stored
    form (lossless; `convert_stored` encodes it for a chat)."""
    if not results:
        raise ValueError("a sweep sheet needs at least one result")
    panels = [open_stored(data) for _, data in results]
    height = panels[0].height
    panels = [
        p if p.height == height else p.resize((max(1, round(p.width * height / p.height)), height)) for p in panels
    ]
    strip = max(MIN_LABEL_STRIP, height // SHEET_LABEL_SHARE)
    width = sum(p.width for p in panels) + divider * (len(panels) - 1)
    canvas = Image.new("RGB", (width, height + strip), LIGHT_GREY)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, round(strip * 0.6)))
    x = 0
    for (label, _), panel in zip(results, panels, strict=True):
        canvas.paste(panel, (x, 0))
        # Centred on the panel, in the strip below it ("mm": the anchor is the text's middle).
        draw.text((x + panel.width / 2, height + strip / 2), label, fill=DARK_GREY, font=font, anchor="mm")
        x += panel.width + divider
    return stored_bytes(canvas)


def _normal_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    name = {"jpg": "jpeg"}.get(name, name)
    if name not in ("png", "jpeg", "webp"):
        raise ValueError(f"unknown picture format {fmt!r}; use png, jpeg (jpg) or webp")
    return name


def _encode_once(img: Image.Image, fmt: str, setting: int) -> bytes:
    """`setting` is the quality for JPEG/WebP and the compression level for PNG."""
    buffer = io.BytesIO()
    if fmt == "png":
        img.save(buffer, format="PNG", compress_level=setting)
    elif fmt == "jpeg":
        img.save(buffer, format="JPEG", quality=setting, optimize=True)
    else:
        img.save(buffer, format="WEBP", quality=setting, method=4)
    return buffer.getvalue()


def encode_picture(img: Image.Image, fmt: str, max_bytes: int | None = None) -> bytes:
    """Encode as png, jpeg (jpg) or webp with no metadata; under max_bytes if given.

    To fit a budget: lower the quality first (JPEG/WebP 95 down to 40; PNG: harder compression),
    then shrink by 0.8 at a time. PictureError only when even a tiny picture won't fit."""
    fmt = _normal_format(fmt)
    ladder = PNG_LEVELS if fmt == "png" else QUALITIES  # best first, smaller files later
    current = _fresh(img)
    best = _encode_once(current, fmt, ladder[0])
    if max_bytes is None or len(best) <= max_bytes:
        return best
    while True:
        smallest = _encode_once(current, fmt, ladder[-1])
        if len(smallest) <= max_bytes:
            return _best_fit(current, fmt, ladder, max_bytes, smallest)
        w, h = current.size
        if min(w, h) * SHRINK < MIN_ENCODE_SIDE:
            raise PictureError(
                N_("The picture can't be made small enough to send (the limit here is {limit:,} bytes)."),
                limit=max_bytes,
            )
        current = current.resize((round(w * SHRINK), round(h * SHRINK)), Image.Resampling.LANCZOS)
        best = _encode_once(current, fmt, ladder[0])
        if len(best) <= max_bytes:
            return best


def _best_fit(img: Image.Image, fmt: str, ladder: tuple[int, ...], max_bytes: int, fits: bytes) -> bytes:
    """The best setting on the ladder that fits, knowing the last one does and the first doesn't
    (binary search: file size falls as the ladder goes on)."""
    lo, hi = 0, len(ladder) - 1  # ladder[lo] too big, ladder[hi] fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        data = _encode_once(img, fmt, ladder[mid])
        if len(data) <= max_bytes:
            hi, fits = mid, data
        else:
            lo = mid
    return fits


# Pictures as the bot stores them: uncompressed TIFF while a job is in flight, PNG once cold.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def stored_bytes(picture: Image.Image) -> bytes:
    """Lossless and fast: uncompressed TIFF writes a 768x576 picture in ~1 ms where PNG took
    30-50 ms on the path between a request and its answer. An hour after delivery the file is
    recompressed to PNG (Admin.compact_pictures); front ends encode what they send from either."""
    buffer = io.BytesIO()
    picture.save(buffer, format="TIFF")
    return buffer.getvalue()


def is_uncompressed(data: bytes) -> bool:
    """A stored picture still in the fast uncompressed form (see stored_bytes)."""
    return data[:4] in TIFF_MAGIC


def open_stored(data: bytes) -> Image.Image:
    """A stored picture (TIFF or PNG, RGB) opened for the engine."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode == "RGB":  # what we store: convert() would only copy it (~1 ms at 512x384)
            img.load()
            return img
        return img.convert("RGB")


def open_stored_all(pictures: list[bytes]) -> list[Image.Image]:
    return [open_stored(data) for data in pictures]


def stored_as_png(data: bytes) -> bytes:
    """An uncompressed picture recompressed as PNG (about half the bytes), once it is cold."""
    buffer = io.BytesIO()
    open_stored(data).save(buffer, format="PNG")
    return buffer.getvalue()


def convert_stored(data: bytes, fmt: str, max_bytes: int | None) -> bytes:
    """A stored picture encoded as png / jpeg / webp for a member (under max_bytes if given)."""
    return encode_picture(open_stored(data), fmt, max_bytes)
