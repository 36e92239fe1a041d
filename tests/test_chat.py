"""The chat flow written once (bot/chat/), on a recording surface instead of a platform: what is
said, to whom, and in which order. The platforms' own look (Markdown, mentions, timestamps) is
pinned by the adapter tests against the strict fakes."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.chat import account, admin, texts
from bot.chat.buttons import owned_job
from bot.chat.surface import Style
from bot.core import texts as core_texts
from bot.core.types import Member
from tests.harness.service import FREE, FREE2, make

ADMIN = Member("web", "admin-1", "Ada")
ADMINS = 'admins = ["web:admin-1"]'  # lands in [bot]

STYLE = Style(
    bold=lambda text: f"*{text}*",
    code=lambda text: f"[{text}]",
    date=lambda at: f"day {int(at)}",
    moment=lambda at: f"at {int(at)}",
    times_note=" (fake times)",
    member=lambda platform, user_id, name: f"{name or '?'}#{user_id}",
    place=lambda entry: None,
    queue_log_hint="/queue log",
    with_style=lambda name: f"/restyle style={name}",
    text_limit=4096,
)


@dataclass
class RecordingSurface:
    """A chat that keeps what was said and which status messages were ended, in order."""

    private: bool = True
    style: Style = STYLE
    events: list[tuple[str, str, str]] = field(default_factory=list)

    async def reply(self, text: str) -> None:
        self.events.append(("reply", "", text))

    async def finish_status(self, job_id: str, text: str) -> None:
        self.events.append(("status", job_id, text))

    @property
    def said(self) -> list[str]:
        return [text for kind, _, text in self.events if kind == "reply"]


async def test_cancel_answers_the_member_first_then_ends_each_status_message(tmp_path):
    h = await make(tmp_path)
    try:
        ids = [(await h.submit(FREE, f"/restyle style {i}")).job_id for i in range(2)]
        await h.submit(FREE2, "/restyle someone else's")
        where = RecordingSurface()
        await account.cancel(h.service, FREE, where)
        assert where.events == [("reply", "", "Cancelled 2 jobs.")] + [("status", i, texts.CANCELLED_BY_COMMAND) for i in ids]
        again = RecordingSurface()
        await account.cancel(h.service, FREE, again)
        assert again.events == [("reply", "", "You have no jobs waiting or running.")]
    finally:
        await h.close()


async def test_me_shows_the_tier_the_day_s_count_and_each_job_s_place_in_line(tmp_path):
    h = await make(tmp_path)
    try:
        await h.submit(FREE2, "/restyle first in line")
        await h.submit(FREE, "/restyle mine")
        where = RecordingSurface()
        await account.me(h.service, FREE, where)
        [text] = where.said
        lines = text.splitlines()
        assert lines[0] == "Tier: *free*"
        assert lines[1].startswith("Today: 1 of ")
        assert lines[2].startswith("Your jobs (1 of up to ")
        assert lines[3].startswith("• “mine” — queued, #2 in line")
    finally:
        await h.close()


async def test_admin_commands_from_a_member_are_refused_in_one_sentence(tmp_path):
    h = await make(tmp_path, extra_config=ADMINS)
    try:
        where = RecordingSurface()
        await admin.ban(h.service, FREE, FREE2, "spam", where, banned=True)
        await admin.ban(h.service, FREE, FREE2, "", where, banned=False)
        await admin.queue(h.service, FREE, where, log=False)
        assert where.said == [texts.NOT_ADMIN.format(command=c) for c in ("ban", "unban", "queue")]
        assert where.said[0] == "Sorry, only the bot's admins can use /ban."
    finally:
        await h.close()


async def test_a_ban_names_the_member_in_the_platform_s_style_and_ends_their_jobs_status_messages(tmp_path):
    h = await make(tmp_path, extra_config=ADMINS)
    try:
        ids = [(await h.submit(FREE, f"/restyle style {i}")).job_id for i in range(2)]
        where = RecordingSurface()
        await admin.ban(h.service, ADMIN, FREE, "flooding", where, banned=True)
        assert where.events == [("reply", "", "Banned Fay#free-1: flooding. Cancelled 2 waiting jobs.")] + [
            ("status", i, texts.CANCELLED) for i in ids
        ]
        unban = RecordingSurface()
        await admin.ban(h.service, ADMIN, FREE, "", unban, banned=False)
        assert unban.said == ["Unbanned Fay#free-1; they can use the bot again."]
    finally:
        await h.close()


async def test_the_queue_names_members_only_where_the_admin_alone_reads_it(tmp_path):
    h = await make(tmp_path, extra_config=ADMINS)
    try:
        await h.submit(FREE, "/restyle waiting here")
        in_group = RecordingSurface(private=False)
        await admin.queue(h.service, ADMIN, in_group, log=False)
        await admin.queue(h.service, ADMIN, in_group, log=True)
        assert in_group.said == [texts.QUEUE_IN_PRIVATE] * 2
        private = RecordingSurface()
        await admin.queue(h.service, ADMIN, private, log=False)
        await admin.queue(h.service, ADMIN, private, log=True, count=1)
        waiting, log = private.said
        assert waiting.splitlines()[0] == "*Waiting:* free 1 · pro 0 · max 0"
        assert "?#free-1 · waiting" in waiting.splitlines()[1] and "“waiting here”" in waiting
        assert log.splitlines()[0] == "*Latest 1 job*, newest first (fake times):"
        assert "?#free-1 in test" in log.splitlines()[1] and "· queued · job [" in log
    finally:
        await h.close()


def test_a_long_list_is_cut_at_whole_lines_to_fit_one_message():
    lines = [f"line {i} " + "x" * 50 for i in range(100)]
    text = texts.fit_lines(lines, 500)
    assert len(text) <= 500 and text.endswith("more lines")
    assert all(line in lines for line in text.splitlines()[:-1])


async def test_a_button_is_for_the_member_who_asked_and_a_gone_job_says_how_to_start_again(tmp_path):
    h = await make(tmp_path)
    try:
        job_id = (await h.submit(FREE, "/restyle mine")).job_id
        assert (await owned_job(h.service, FREE, job_id)).id == job_id
        assert await owned_job(h.service, FREE2, job_id) == core_texts.NOT_YOURS
        assert await owned_job(h.service, Member("telegram", FREE.user_id), job_id) == core_texts.NOT_YOURS  # same id, other app
        assert await owned_job(h.service, FREE, "no-such-job") == core_texts.JOB_GONE
    finally:
        await h.close()


async def test_styles_lists_every_recipe_with_its_strength_and_how_to_use_one():
    from bot.config import DEFAULT_STYLES

    where = RecordingSurface()
    await account.styles(DEFAULT_STYLES, where)
    [text] = where.said
    lines = text.splitlines()
    assert lines[0].startswith("*Styles*: reply to a picture with /restyle style=NAME")
    assert [line.split(" (")[0] for line in lines[1:]] == [f"• [{name}]" for name in DEFAULT_STYLES]
    assert "(strength 0.5)" in lines[2] and "neon" in lines[2]


async def test_a_restyle_with_a_style_queues_the_recipe_s_prompt_and_strength(tmp_path):
    h = await make(tmp_path)
    try:
        accepted = await h.submit(FREE, "/restyle style=fantasy a dragon")
        job = await h.service.jobs.job(accepted.job_id)
        assert job.prompt.startswith("full-colour fantasy painting") and job.prompt.endswith(", a dragon")
        assert job.strength == 0.8
        refused = await h.submit(FREE, "/restyle style=nope")
        assert refused.reason == "command" and "The styles are: autumn, fantasy, neon, watercolour" in refused.text
    finally:
        await h.close()


async def test_me_says_what_the_next_tier_would_change_and_nothing_at_the_top(tmp_path):
    from tests.harness.service import MAX

    h = await make(tmp_path)
    try:
        where = RecordingSurface()
        await account.me(h.service, FREE, where)
        last = where.said[0].splitlines()[-1]
        assert last.startswith("*Pro* would give: results as soon as they are ready (now at least 40 s); a place in line")
        assert "200 restyles a day (now 20)" in last and "pictures up to 768 px (now 512)" in last and last.endswith("/upgrade")
        assert "strength sweeps (strength=sweep" in last
        top = RecordingSurface()
        await account.me(h.service, MAX, top)
        assert "would give" not in top.said[0]
    finally:
        await h.close()


def test_only_what_differs_between_two_tiers_is_named():
    from dataclasses import replace

    from bot.config import DEFAULT_TIERS

    free = DEFAULT_TIERS["free"]
    richer = replace(free, name="pro", rank=1, daily_quota=50)
    assert texts.next_tier_gains(free, richer) == ["a place in line ahead of free members", "50 restyles a day (now 20)"]
    sweeping = replace(free, name="pro", rank=1, sweep=True)
    assert texts.next_tier_gains(free, sweeping)[-1].startswith("strength sweeps")
    assert not any("sweep" in gain for gain in texts.next_tier_gains(sweeping, replace(sweeping, name="max", rank=2)))
