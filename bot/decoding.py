"""Members' pictures are decoded in a small thread pool of their own, with a time limit.

Why a pool of their own: decoding used to share asyncio's default pool with the engine, so six
slow uploads made an ordinary one wait 77 s behind them, and a busy engine delayed every upload.
Why small: it bounds how many decodes hold memory at once (each at most decoded_pixel_limit).
Why threads and not processes: every input that made decoding slow is refused from its header
(engine.pictures: pixel counts, a JPEG's scans), so what is left is bounded, and a thread needs
no copy of the upload. A Python thread cannot be stopped, though: a decode past the time limit is
refused to the member while its thread finishes in the background, so at most `threads`
decodes can be stuck at once, and uploads then wait at most `wait_limit_s` for a thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from bot.i18n import N_
from engine.pictures import PictureError, prepare_picture

log = logging.getLogger("bot.decoding")

DECODE_THREADS = 2
DECODE_TIME_LIMIT_S = 15.0  # the slowest picture we accept decodes in ~2 s here
DECODE_WAIT_LIMIT_S = 60.0

TOO_SLOW = N_("That picture takes too long to read; save it again as an ordinary JPEG or PNG and send it again.")
BUSY = N_("Too many pictures are being read right now; send yours again in a minute.")


class PictureDecoder:
    """Runs `prepare` (engine.pictures.prepare_picture unless a test gives another) in its
    own threads: at most `threads` at once, each refused after `time_limit_s` of decoding."""

    def __init__(
        self,
        threads: int = DECODE_THREADS,
        time_limit_s: float = DECODE_TIME_LIMIT_S,
        wait_limit_s: float = DECODE_WAIT_LIMIT_S,
        prepare: Callable[..., Image.Image] = prepare_picture,
    ) -> None:
        self.threads = threads
        self.time_limit_s = time_limit_s
        self.wait_limit_s = wait_limit_s
        self._prepare = prepare
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="picture-decode")

    async def prepare(self, data: bytes, *, who: str = "a member", **options: Any) -> Image.Image:
        """The upload made ready for the engine; PictureError (a sentence for the member) for
        anything refused, too slow to decode, or waiting too long for a decode thread."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        run = functools.partial(contextvars.copy_context().run, self._prepare, data, **options)

        def decode() -> Image.Image:
            loop.call_soon_threadsafe(started.set)
            return run()

        future = loop.run_in_executor(self._pool, decode)
        try:
            async with asyncio.timeout(self.wait_limit_s):
                await started.wait()
        except TimeoutError:
            future.cancel()  # still queued: it never runs (if it just started, its result is dropped)
            log.warning("picture from %s refused: no decode thread free for %.0f s", who, self.wait_limit_s)
            raise PictureError(BUSY) from None
        try:
            async with asyncio.timeout(self.time_limit_s):
                return await future
        except TimeoutError:
            log.warning(
                "picture from %s (%d bytes) refused: still decoding after %.0f s; its thread finishes in the background",
                who, len(data), self.time_limit_s,
            )  # fmt: skip
            raise PictureError(TOO_SLOW) from None
