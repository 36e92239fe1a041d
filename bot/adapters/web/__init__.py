"""The local web page and the ops endpoints: `adapter.py` (the page's JSON API, /healthz,
/readyz, /metrics and the token rules), `compare.py` (a chat result's compare view through its
signed link) and `static/` (the page itself: HTML, CSS and JavaScript, no build step)."""

from bot.adapters.web.adapter import WebAdapter, WebStartError

__all__ = ["WebAdapter", "WebStartError"]
