"""Pictures in and out: what people really upload, made into what the engine wants, and results
encoded under a platform's byte limit. Pillow only (no torch), so the bot's core can import it.

Every refusal is a PictureError whose message is one or two sentences for a chat member.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS_SENTENCE = "Send a photo or an image file (PNG, JPEG, WebP or GIF)."
NOT_A_PICTURE = "That file isn't a picture I can read (PNG, JPEG, WebP or GIF). Send a photo or an image file."
READABLE = ("PNG", "JPEG", "WEBP", "GIF")  # Pillow's format ids (JPEG covers phones' MPO files)
MAX_ASPECT = 8  # longer side / shorter side
LIGHT_GREY = (220, 220, 220)
QUALITIES = (95, 90, 85, 80, 75, 70, 60, 50, 40)  # JPEG/WebP, best first
PNG_LEVELS = (6, 9)  # zlib levels: the usual, then the hardest
SHRINK = 0.8  # per step when a picture must get smaller to fit a byte budget
MIN_ENCODE_SIDE = 16  # below this, give up on a byte budget


class PictureError(ValueError):
    """A picture we won't take (or can't send); the message is written for a chat member."""


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


def _open(data: bytes, max_bytes: int, max_pixels: int) -> Image.Image:
    """Open (headers only) and run every check that needs no pixels."""
    if not data:
        raise PictureError(f"That file is empty. {FORMATS_SENTENCE}")
    if len(data) > max_bytes:
        raise PictureError(f"That picture is {_mb(len(data))}; the limit is {_mb(max_bytes)}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=READABLE)
    except Image.DecompressionBombError:
        raise PictureError(_too_many_pixels(None, max_pixels)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        kind = _sniff(data)
        if kind == "HEIC":
            raise PictureError(
                "That's a HEIC photo, which I can't read. Send it as a photo (not as a file), or save it as JPEG first."
            ) from exc
        if kind:
            raise PictureError(f"That's an {kind} file, which I can't read. {FORMATS_SENTENCE}") from exc
        raise PictureError(NOT_A_PICTURE) from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise PictureError(NOT_A_PICTURE)
    if width * height > max_pixels:
        raise PictureError(_too_many_pixels((width, height), max_pixels))
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise PictureError(
            f"That picture is {width} × {height} pixels, too long and thin to restyle. "
            f"Crop it so one side is at most {MAX_ASPECT} times the other."
        )
    return img


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> str:
    mp = f"{max_pixels / 1_000_000:g}"
    if size is None:
        return f"That picture has far too many pixels; the limit is {mp} megapixels."
    return f"That picture is {size[0]} × {size[1]} pixels; the limit is {mp} megapixels."


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    """The size as people see it: EXIF orientations 5 to 8 swap width and height."""
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block must not refuse a good picture
        orientation = None
    w, h = img.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def picture_size(data: bytes, *, max_bytes: int = 20_000_000, max_pixels: int = 40_000_000) -> tuple[int, int]:
    """Width and height as shown (EXIF orientation applied), read from the header only."""
    with _open(data, max_bytes, max_pixels) as img:
        return _oriented_size(img)


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
        lo, hi = img.getextrema()
        top = 255 if hi <= 255 else 65535 if hi <= 65535 else hi
        img = img.point(lambda v: v * (255 / top)).convert("L")
        mode = "L"
    elif mode == "F":
        lo, hi = img.getextrema()
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
) -> Image.Image:
    """An upload made ready for the engine: RGB, upright, no metadata, longest side <= max_side,
    shorter side brought up towards min_side, aspect kept, both sides multiples of 8 (>= 64).

    Raises PictureError (a sentence for the member) for anything we won't take; size, format,
    pixel count and aspect are checked from the header before any pixels are decoded."""
    img = _open(data, max_bytes, max_pixels)
    try:
        width, height = _oriented_size(img)
        target = _target_size(width, height, max_side, min_side)
        if img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers the target.
            scale = max(target[0] / width, target[1] / height)
            img.draft(img.mode, (max(1, int(img.size[0] * scale) + 1), max(1, int(img.size[1] * scale) + 1)))
        img.seek(0)  # animated GIF/WebP: the first frame
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except Image.DecompressionBombError:
        raise PictureError(_too_many_pixels(None, max_pixels)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise PictureError(
            "That picture is damaged or cut short (perhaps the upload didn't finish); send it again."
        ) from exc
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: keep the picture as stored
        upright = img
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
                f"The picture can't be made small enough to send (the limit here is {max_bytes:,} bytes)."
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
