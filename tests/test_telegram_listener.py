"""The Telegram front end under the listener lease (bot/listener.py), as it runs when several
front ends share one database: only the holder polls; every update is written down before its
offset is confirmed, so a handover neither loses nor repeats one. Against the fake Bot API
server (tests/fake_telegram.py), on SQLite (the lease and inbox behave the same on both; the
processes on PostgreSQL are tests/test_listener_scale_out.py)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

import pytest

from bot.adapters.telegram.adapter import TelegramAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.config import load_config
from bot.listener import CONTEND_EVERY_S, Listeners, stream_name
from bot.store import Store
from tests.fake_telegram import FakeTelegram
from tests.fakes import FakeEngine, wait_parked, wait_until
from tests.harness.telegram_bot import (
    ANA,
    BEN,
    TOKEN,
    fake,  # noqa: F401  (fixtures)
    free_port,
    photo_message,
    replies_to,
    write_config,
)

pytestmark = pytest.mark.timeout(30)

LEASE_S = 9.0


class CountingStore:
    """The app's store, counting the lease attempts (to wait on them instead of sleeping)."""

    def __init__(self, store) -> None:
        self.store = store
        self.attempts = 0
        self.sweeps = 0  # looks for updates a stopped front end left unhandled

    async def unhandled(self, *args) -> list:
        self.sweeps += 1
        return await self.store.unhandled(*args)

    async def take_listener(self, *args) -> bool:
        self.attempts += 1
        return await self.store.take_listener(*args)

    def __getattr__(self, name):
        return getattr(self.store, name)


@pytest.fixture
async def leased_bot(tmp_path, fake):
    apps: list[App] = []

    async def start(clock: FakeClock | None = None, telegram: str = "") -> tuple[App, TelegramAdapter, CountingStore]:
        config = load_config(write_config(tmp_path, fake, telegram=telegram), env={})
        clock = clock or FakeClock()
        made: list[TelegramAdapter] = []

        def adapters(c, service, health):
            adapter = TelegramAdapter(c, service, edit_interval_s=0.2, poll_timeout_s=5)
            made.append(adapter)
            return [adapter]

        app = await App.create(config, engine_factory=lambda _: FakeEngine(), clock=clock, adapters=adapters)
        apps.append(app)
        counting = CountingStore(app.store)
        made[0].listeners = Listeners(counting, app.service.instance_id, LEASE_S, clock)
        await app.start()
        return app, made[0], counting

    async def stop(app: App) -> None:
        apps.remove(app)
        await app.stop()

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for app in reversed(apps):
        await app.stop()


def queued_answers(fake: FakeTelegram, request: dict) -> list:
    return [c for c in replies_to(fake, request) if str(c.params.get("text", "")).startswith("Queued")]


async def handled_everything(app: App, adapter: TelegramAdapter, fake: FakeTelegram, since: int) -> None:
    """Until every update pushed so far was confirmed by a getUpdates issued after call number
    `since`, and whatever those updates started has ended: what was not sent by then will not be."""
    last = fake.last_update_id

    def confirmed() -> bool:
        calls = fake.calls_to("getUpdates")[since:]
        return any(int(c.params.get("offset") or 0) > last for c in calls)

    await wait_until(confirmed, what="the updates to be confirmed")
    await asyncio.wait_for(adapter.application.update_queue.join(), 5)  # python-telegram-bot's own polling
    await wait_until(lambda: not adapter._updates.in_hand, what="the leased updates to be handled")
    await asyncio.wait_for(app.service.dispatch.wait_delivered(), 5)


async def test_an_update_fetched_again_after_a_handover_is_not_handled_twice(leased_bot, fake):
    app, adapter, _ = await leased_bot()
    await fake.wait_for("getUpdates")
    request = fake.message(ANA, text="/restyle ink", reply_to=photo_message(fake))
    restyle_update = fake.last_update_id
    question = fake.message(BEN, text="/help")  # an answer, not a job: no request key guards it
    help_update = fake.last_update_id
    await wait_until(lambda: queued_answers(fake, request) and replies_to(fake, question), what="the answers")
    await handled_everything(app, adapter, fake, 0)
    # The front end stops and another takes over (a new reader, with no offset), and Telegram
    # serves the updates again, as it does for those whose offset was never confirmed.
    await leased_bot.stop(app)
    fake.serve_again(restyle_update)
    fake.serve_again(help_update)
    since = len(fake.calls_to("getUpdates"))
    app, adapter, _ = await leased_bot()
    await handled_everything(app, adapter, fake, since)
    assert len(queued_answers(fake, request)) == 1
    assert len(replies_to(fake, question)) == 1
    assert len(await app.store.job_log()) == 1


async def test_updates_a_front_end_received_but_never_handled_are_handled_by_the_next_holder(leased_bot, fake):
    app, adapter, _ = await leased_bot()
    await fake.wait_for("getUpdates")
    # Another front end wrote this update down, confirmed its offset (so Telegram never sends it
    # again) and was killed before handling it.
    photo = photo_message(fake)
    request = fake.message(BEN, text="/restyle charcoal", reply_to=photo, push=False)
    body = {"update_id": 999_001, "message": request}
    assert await app.store.receive("telegram", "update:999001", json.dumps(body), "dead-front-end", 1.0)
    await adapter.stop()
    await adapter.start()
    await wait_until(lambda: queued_answers(fake, request), what="the left-over update's answer")
    async def none_left() -> bool:
        return await app.store.unhandled("telegram") == []

    await wait_until(none_left, what="the left-over update to be marked handled")
    await asyncio.wait_for(app.service.dispatch.wait_delivered(), 5)
    assert len(queued_answers(fake, request)) == 1


async def test_only_the_lease_holder_polls_and_another_takes_over_when_its_lease_runs_out(tmp_path, fake, leased_bot):
    clock = FakeClock()
    name = stream_name("telegram", TOKEN)
    # Another front end holds the lease when this one starts.
    config = load_config(write_config(tmp_path, fake), env={})
    early = await Store.open(config.bot.data_dir)
    assert await early.take_listener(name, "other-front-end", clock.now(), clock.now() + LEASE_S)
    await early.close()
    app, adapter, counting = await leased_bot(clock)
    await wait_until(lambda: adapter.ready and counting.attempts >= 1, what="a first try for the lease")
    for _ in range(3):  # it keeps trying, and never polls meanwhile (the fake would answer 409 to one of two)
        tries = counting.attempts
        await wait_parked(clock, clock.now() + CONTEND_EVERY_S)
        await clock.advance(CONTEND_EVERY_S)
        await wait_until(lambda: counting.attempts > tries, what="another try for the lease")
    assert fake.calls_to("getUpdates") == []
    assert await app.store.listener_holder(name, clock.now()) == "other-front-end"
    # The other front end stops renewing: once its lease has run out, this one takes over. (The
    # count above goes up as a try starts: wait until that try has ended and the next one sleeps,
    # or the advance lands before that sleep and nothing ever wakes it.)
    await wait_parked(clock, clock.now() + CONTEND_EVERY_S)
    await clock.advance(LEASE_S)
    await fake.wait_for("getUpdates")
    assert await app.store.listener_holder(name, clock.now()) == app.service.instance_id
    request = fake.message(ANA, text="/restyle ink", reply_to=photo_message(fake))
    await wait_until(lambda: replies_to(fake, request), what="the new holder's answer")


def webhook_config(port: int) -> str:
    return f'webhook_url = "http://127.0.0.1:{port}/telegram-hook"\nwebhook_listen = "127.0.0.1"\nwebhook_port = {port}'


async def post_update(port: int, secret: str, update: dict) -> int:
    """Deliver an update as Telegram does to a webhook; the HTTP status Telegram would see."""
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"http://127.0.0.1:{port}/telegram-hook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}
        ) as response:
            return response.status


async def test_with_a_webhook_one_front_end_sets_it_and_a_retried_update_is_handled_once(leased_bot, fake):
    fake.local_mode = True  # a self-hosted Bot API server: http webhooks on any port
    ports = free_port(), free_port()
    first, first_adapter, _ = await leased_bot(telegram=webhook_config(ports[0]))
    await wait_until(lambda: fake.calls_to("setWebhook"), what="the holder to set the webhook")
    second, second_adapter, second_store = await leased_bot(telegram=webhook_config(ports[1]))
    # The second front end is up and has tried for the lease (and lost it to the first).
    await wait_until(lambda: second_adapter.ready and second_store.attempts >= 1, what="the second front end's try")
    secret = fake.webhook["secret_token"]
    question = fake.message(BEN, text="/help", push=False)  # an answer, not a job: no request key guards it
    update = {"update_id": 70_001, "message": question}
    assert await post_update(ports[0], secret, update) == 200
    # Telegram sends it again (it saw no 200 in time), and a load balancer hands it to the other.
    assert await post_update(ports[1], secret, update) == 200
    request = fake.message(ANA, text="/restyle ink", reply_to=photo_message(fake), push=False)
    assert await post_update(ports[1], secret, {"update_id": 70_002, "message": request}) == 200
    await wait_until(lambda: queued_answers(fake, request), what="the other front end's answer")
    await wait_until(lambda: not first_adapter._updates.in_hand and not second_adapter._updates.in_hand, what="the updates to be handled")
    assert len(replies_to(fake, question)) == 1
    assert len(fake.calls_to("setWebhook")) == 1
    assert fake.calls_to("getUpdates") == []
    await asyncio.wait_for(second.service.dispatch.wait_delivered(), 5)


async def test_a_webhook_update_a_stopped_front_end_wrote_down_is_handled_by_the_holder_only(leased_bot, fake):
    fake.local_mode = True
    clock = FakeClock()
    port = free_port()
    app, adapter, counting = await leased_bot(clock, telegram=webhook_config(port))
    await wait_until(lambda: counting.sweeps >= 1, what="the holder's first look for left-overs")
    # Written down by a front end that died before handling it, and by one alive (its presence
    # lease runs) that is handling its own: only the first is the holder's to handle.
    photo = photo_message(fake)
    orphan = fake.message(BEN, text="/restyle charcoal", reply_to=photo, push=False)
    in_hand = fake.message(ANA, text="/restyle ink", reply_to=photo, push=False)
    alive = "a-live-front-end"
    assert await app.store.take_listener(stream_name("telegram", TOKEN, f"frontend:{alive}"), alive, clock.now(), clock.now() + 10 * LEASE_S)
    assert await app.store.receive("telegram", "update:80001", json.dumps({"update_id": 80_001, "message": orphan}), "dead-front-end", 1.0)
    assert await app.store.receive("telegram", "update:80002", json.dumps({"update_id": 80_002, "message": in_hand}), alive, 1.0)
    sweeps = counting.sweeps
    await wait_parked(clock, clock.now() + LEASE_S / 3)
    await clock.advance(LEASE_S / 3)
    await wait_until(lambda: queued_answers(fake, orphan), what="the left-over update's answer")
    await wait_until(lambda: counting.sweeps > sweeps and not adapter._updates.in_hand, what="the sweep to end")
    assert [key for key, _ in await app.store.unhandled("telegram")] == ["update:80002"]
    assert replies_to(fake, in_hand) == []
    await asyncio.wait_for(app.service.dispatch.wait_delivered(), 5)


async def test_a_webhook_update_that_cannot_be_written_down_is_refused_so_telegram_sends_it_again(leased_bot, fake, monkeypatch):
    fake.local_mode = True
    port = free_port()
    app, adapter, _ = await leased_bot(telegram=webhook_config(port))
    await wait_until(lambda: fake.calls_to("setWebhook"), what="the webhook to be set")

    async def database_gone(*args) -> bool:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(app.store, "receive", database_gone)
    question = fake.message(BEN, text="/help", push=False)
    assert await post_update(port, fake.webhook["secret_token"], {"update_id": 90_001, "message": question}) == 503
    monkeypatch.undo()
    assert await post_update(port, fake.webhook["secret_token"], {"update_id": 90_001, "message": question}) == 200
    await wait_until(lambda: replies_to(fake, question), what="the answer to the update sent again")
    assert len(replies_to(fake, question)) == 1
