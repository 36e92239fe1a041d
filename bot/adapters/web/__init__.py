"""The local web page and the ops endpoints, one room a file:

    adapter.py     the front end itself: start/stop, the route table, the FrontEnd side, the middlewares
    access.py      who may come in: the access token (query, cookie, bearer), loopback and same-origin rules
    jobs.py        the job API: submit, state and its live stream, files, again, cancel, sweep, keep
    uploads.py     reading what the page sends within its time and size limits; the form as a command
    health.py      /healthz, /readyz, /metrics
    page.py        the page's files from static/, /api/session, /api/texts
    errors.py      {"error": ...} answers and the HTTP status of each refusal
    sweep.py       a strength sweep's one state and its ZIP
    compare.py     a chat result's compare view through its signed link
    page_texts.py  the page's own words in the browser's language
    static/        the page itself: HTML, CSS and JavaScript, no build step

Every room gets what it needs passed in and never imports the adapter (tests/test_layout.py)."""

from bot.adapters.web.adapter import WebAdapter, WebStartError

__all__ = ["WebAdapter", "WebStartError"]
