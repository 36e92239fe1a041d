"""The sliding-window limiter for what members send (flood)."""

from __future__ import annotations

from collections import deque

from bot.core import texts
from bot.core.types import Reason, Refused
from bot.i18n import translator


class FloodGuard:
    """At most `limit` commands per member in `window_s`; the first refusal is said, later ones
    in the same window are quiet, so a flood costs one message. Jobs.admit is the one
    caller: every command, refused or not, and every button counts once."""

    def __init__(self, limit: int = 10, window_s: float = 10.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._recent: dict[str, deque[float]] = {}
        self._warned_until: dict[str, float] = {}

    def check(self, member_key: str, now: float, lang: str | None = None) -> Refused | None:
        recent = self._recent.setdefault(member_key, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) < self.limit:
            recent.append(now)
            return None
        quiet = self._warned_until.get(member_key, 0.0) > now
        self._warned_until[member_key] = recent[0] + self.window_s
        return Refused(
            Reason.FLOOD,
            translator(lang).gettext(texts.TOO_FAST).format(seconds=int(recent[0] + self.window_s - now) + 1),
            quiet=quiet,
            lang=lang,
        )
