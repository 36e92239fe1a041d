"""Front ends: one module per platform, each a thin translator between platform events and the
core's use cases (bot.core, reached through bot.service). They never touch SQL or torch.

Every adapter is an `Adapter`: the core's FrontEnd (it receives progress and results for
the jobs it submitted) plus start/stop for the app to run it.
"""

from __future__ import annotations

from typing import Protocol

from bot.core.types import FrontEnd


class AdapterStartError(RuntimeError):
    """A front end could not start (port taken, token refused...); the message is one sentence
    for the admin, naming the setting to change."""


class Adapter(FrontEnd, Protocol):
    async def start(self) -> None:
        """Connect and begin taking events; return once running (not when stopped)."""
        ...

    async def stop(self) -> None:
        """Stop taking events and close connections."""
        ...
