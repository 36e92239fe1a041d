"""Groups that became supergroups: Telegram gives the chat a new id (Bot API, "migrate_to_chat_id"),
and every later send to the old id fails with ChatMigrated. One record of the moves in this
run, for delivery (sends go to the new id), statuses (the old status message is left alone) and
the [access] check (a supergroup made from an allowed group is allowed too)."""

from __future__ import annotations

import logging
from collections.abc import Collection

log = logging.getLogger("bot.telegram")


class MovedChats:
    """Which group became which supergroup, both ways."""

    def __init__(self, listed: Collection[int]) -> None:
        self._listed = listed  # [access] telegram_chats: an old id there is worth a word in the log
        self._to: dict[int, int] = {}  # group id -> the supergroup it became
        self._from: dict[int, int] = {}

    def moved(self, old: int, new: int) -> None:
        """A group became a supergroup (a new chat id): deliveries go to the new id from now on."""
        if self._to.get(old) == new:
            return
        self._to[old] = new
        self._from[new] = old
        listed = old in self._listed
        log.warning("Telegram group %s became supergroup %s; using the new id%s", old, new,
                    f" (replace {old} with {new} in [access] telegram_chats)" if listed else "")  # fmt: skip

    def now(self, chat_id: int) -> int | None:
        """The supergroup `chat_id` became, if it did."""
        return self._to.get(chat_id)

    def was(self, chat_id: int) -> int | None:
        """The group the supergroup `chat_id` was made from, if it was."""
        return self._from.get(chat_id)
