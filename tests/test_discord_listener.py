"""The Discord front end under the listener lease (bot/listener.py), as it runs when several
front ends share one database: each shard's gateway session is held by one of them. The fake
Discord (tests/fake_discord.py) sends every event of a shard to every session of that shard, as
Discord does, so a front end connecting without the lease would answer each command twice (and
the second answer would fail with 40060). Two whole apps in one process on one SQLite file; the
lease behaves the same on PostgreSQL (tests/test_listener.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.adapters.discord.adapter import DiscordAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.config import load_config
from bot.listener import Listeners
from tests.fake_discord import FakeDiscord
from tests.fakes import FakeEngine, wait_until

pytestmark = pytest.mark.timeout(30)

LEASE_S = 9.0
SHARD0_GUILD = 777  # (777 >> 22) % 2 == 0
SHARD1_GUILD = (1 << 22) + 5  # % 2 == 1


class FrontEnds:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = FakeClock()
        self.fake = FakeDiscord(clock=self.clock)
        self.apps: list[App] = []
        self.adapters: list[DiscordAdapter] = []

    async def start_one(self, shards: int | str = 2, *, leased: bool = True) -> DiscordAdapter:
        path = self.tmp_path / "config.toml"
        shards_toml = shards if isinstance(shards, int) else f'"{shards}"'
        path.write_text(
            f'[bot]\ndata_dir = "{self.tmp_path / "data"}"\n'
            f'[discord]\ntoken = "fake-token"\napi_base = "{self.fake.api_base}"\n'
            f'gateway_url = "{self.fake.gateway_url}"\nshards = {shards_toml}\n'
            "[tiers.free]\nmin_turnaround_s = 0\n"
        )
        config = load_config(path, env={})
        made: list[DiscordAdapter] = []

        def adapters(config, service, health):
            # identify_wait_s: the fake does not ration IDENTIFYs (Discord: one per 5 s and bucket)
            made.append(DiscordAdapter(config, service, edit_interval_s=0.0, request_timeout_s=2.0, ready_timeout_s=5.0,
                                       identify_wait_s=0.0))  # fmt: skip
            return made

        app = await App.create(config, clock=self.clock, engine_factory=lambda c: FakeEngine(), adapters=adapters)
        if leased:
            made[0].listeners = Listeners(app.store, app.service.instance_id, LEASE_S, self.clock)
        self.apps.append(app)
        self.adapters.append(made[0])
        await app.start()
        return made[0]

    async def stop_one(self, adapter: DiscordAdapter) -> None:
        i = self.adapters.index(adapter)
        self.adapters.pop(i)
        await self.apps.pop(i).stop()
        # discord.py's REST base and gateway are class attributes, which a stopping adapter puts
        # back: one process holds one adapter in production; here the others point them again.
        for other in self.adapters:
            other.gateway._library_urls.point_at(self.fake.api_base, self.fake.gateway_url)

    async def settle_until(self, condition, what: str) -> None:
        """Move the clock a second at a time (the leases' renewals and tries) until `condition`."""
        for _ in range(60):
            if condition():
                return
            await self.clock.advance(1.0)
            await asyncio.sleep(0.05)
        raise AssertionError(f"never happened: {what}; shards held: {self.held()}")

    def held(self) -> list[list[int]]:
        return [sorted(getattr(a.gateway, "_shard_clients", ())) for a in self.adapters]

    async def close(self) -> None:
        for app in reversed(self.apps):
            await app.stop()
        await self.fake.close()


@pytest.fixture
async def fronts(tmp_path):
    made = FrontEnds(tmp_path)
    await made.fake.start()
    yield made
    await made.close()


def answers(fake: FakeDiscord, interaction: dict) -> list:
    return fake.find("POST", rf"^/interactions/{interaction['id']}/[^/]+/callback$", ok=False)


async def test_two_front_ends_split_the_shards_and_each_command_is_answered_once(fronts):
    first = await fronts.start_one()
    await fronts.settle_until(lambda: fronts.held() == [[0, 1]], "the first front end holding both shards")
    second = await fronts.start_one()
    # The first gives up its share's surplus; the second takes it: one session per shard.
    await fronts.settle_until(lambda: sorted(map(tuple, fronts.held())) == [(0,), (1,)], "one shard each")
    assert {(0, 2), (1, 2)} <= set(fronts.fake.sessions_identified)
    asked = [
        await fronts.fake.slash("help", guild_id=SHARD0_GUILD),
        await fronts.fake.slash("help", guild_id=SHARD1_GUILD),
        await fronts.fake.slash("help", guild_id=None),  # a DM: shard 0
    ]
    for interaction in asked:
        await fronts.fake.wait_for(lambda: answers(fronts.fake, interaction), what="an answer")
    # Every answer the fake got (a second one would be refused 40060) has come back by now:
    # each front end's handlers have ended once the answer they sent was recorded.
    await wait_until(lambda: all(not a._tasks for a in (first, second)), what="the handlers to end")
    assert [len(answers(fronts.fake, i)) for i in asked] == [1, 1, 1]
    assert all(c.status < 300 for i in asked for c in answers(fronts.fake, i))


async def test_when_a_front_end_stops_the_other_takes_its_shard_over(fronts):
    first = await fronts.start_one()
    await fronts.settle_until(lambda: fronts.held() == [[0, 1]], "the first front end holding both shards")
    second = await fronts.start_one()
    await fronts.settle_until(lambda: sorted(map(tuple, fronts.held())) == [(0,), (1,)], "one shard each")
    identified = len(fronts.fake.sessions_identified)
    await fronts.stop_one(first)  # gives its leases up
    await fronts.settle_until(lambda: fronts.held() == [[0, 1]], "the second front end holding both shards")
    assert len(fronts.fake.sessions_identified) == identified + 1  # a fresh IDENTIFY for the shard taken over
    interaction = await fronts.fake.slash("help", guild_id=None)  # DMs come on shard 0
    await fronts.fake.wait_for(lambda: answers(fronts.fake, interaction), what="the new holder's answer")
    assert second.gateway._shard_clients


async def test_the_fake_sends_every_event_to_every_session_of_its_shard(fronts):
    """What the lease is for: two front ends without it (one process each, say, on SQLite
    copies) both receive the command, and the second answer is refused (40060)."""
    await fronts.start_one(1, leased=False)
    await fronts.start_one(1, leased=False)
    await fronts.fake.wait_for(lambda: len(fronts.fake._live) == 2, what="two sessions")
    interaction = await fronts.fake.slash("help", guild_id=SHARD0_GUILD)
    await fronts.fake.wait_for(lambda: len(answers(fronts.fake, interaction)) == 2, what="both sessions answering")
    assert sorted(c.status for c in answers(fronts.fake, interaction))[-1] == 400  # 40060: already acknowledged


async def test_one_process_in_3000_servers_runs_the_shards_discord_recommends(fronts):
    fronts.fake.guild_count = 3000  # more than one session may carry (4011 Sharding required)
    adapter = await fronts.start_one("auto", leased=False)
    await fronts.fake.wait_for(lambda: len(fronts.fake.sessions_identified) >= 3, what="three sessions")
    assert sorted(fronts.fake.sessions_identified) == [(0, 3), (1, 3), (2, 3)]
    asked = [await fronts.fake.slash("help", guild_id=None), await fronts.fake.slash("help", guild_id=SHARD1_GUILD)]
    for interaction in asked:  # a DM (shard 0) and a server on another shard
        await fronts.fake.wait_for(lambda: answers(fronts.fake, interaction), what="an answer")
    assert adapter.client is not None and adapter.client.shard_count == 3
