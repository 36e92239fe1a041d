"""Hostile pictures, made with Pillow for the tests and bench/hostile_pictures.py: files that pass
every ordinary check and then cost minutes of CPU or a gigabyte of memory to decode."""

from __future__ import annotations

import io
import struct

from PIL import Image

EOI = b"\xff\xd9"
SOS = b"\xff\xda"


def progressive_jpeg(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", progressive=True, **options)
    return buffer.getvalue()


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """The JPEG with its last scan (SOS header and entropy-coded data) repeated `times` more
    times before EOI. A repeated refinement scan is valid to libjpeg and costs a full pass over
    every block each time. For files Pillow wrote (no EXIF thumbnail, no comment), the last FF DA
    is the last scan: entropy-coded data never holds FF DA (every FF there is followed by 00 or a
    restart marker)."""
    assert jpeg.endswith(EOI)
    last = jpeg.rindex(SOS)
    scan = jpeg[last : len(jpeg) - len(EOI)]
    return jpeg[: len(jpeg) - len(EOI)] + scan * times + EOI


def scan_bomb(side: int = 6000, target_bytes: int = 300_000) -> bytes:
    """A grey side x side progressive JPEG whose last scan is repeated until the file is about
    target_bytes (6000 and 300 KB: about 2,700 scans, a minute or more of decoding)."""
    plain = progressive_jpeg(Image.new("L", (side, side), 128), quality=90)
    scan_bytes = len(plain) - plain.rindex(SOS) - len(EOI)
    return repeat_last_scan(plain, max(1, (target_bytes - len(plain)) // scan_bytes))


def lossless_webp(side: int = 6300) -> bytes:
    """A flat side x side lossless WebP: tens of bytes on disk, side² x 4 bytes once decoded
    (6300: ~160 MB as RGBA in Pillow, ~1 GB at the peak of a decode with conversions)."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def corrupt_exif(tags: int = 130) -> bytes:
    """An EXIF block (as Pillow's `exif=` takes it) of `tags` entries each claiming more data than
    the whole block holds: Pillow warns once per tag ("Tag data larger than file. Skipping tag N")."""
    entries = b"".join(struct.pack("<HHLL", 0x9000 + i, 4, 100_000, 8) for i in range(tags))
    ifd = struct.pack("<H", tags) + entries + struct.pack("<L", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<L", 8) + ifd
