"""The SQLite store on its own: schema, quota accounting, and storage faults."""

from __future__ import annotations

import os
import sqlite3

import pytest

from bot.store import MIGRATIONS, JobRecord, Store, StoreError


def job(job_id: str, account_id: int, **changes) -> JobRecord:
    values = dict(
        id=job_id, account_id=account_id, platform="test", platform_user_id="u", reply={"chat": 1},
        prompt="p", negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None,
        width=64, height=64, batch_key="64x64:4:2", tier="free", rank=0.0, seq=1, status="queued",
        created_at=100.0, quota_day="2027-01-15",
    )  # fmt: skip
    values.update(changes)
    return JobRecord(**values)


async def test_new_database_is_at_the_latest_schema_in_wal_mode(tmp_path):
    store = await Store.open(tmp_path)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    db = sqlite3.connect(tmp_path / "restyle.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_reopening_does_not_migrate_twice(tmp_path):
    store = await Store.open(tmp_path)
    await store.close()
    store = await Store.open(tmp_path)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    store = await Store.open(tmp_path)
    await store.close()
    db = sqlite3.connect(tmp_path / "restyle.sqlite3")
    db.execute("INSERT INTO schema_version VALUES (999)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer restyle-bot"):
        await Store.open(tmp_path)


async def test_quota_is_spent_atomically_and_refunded_once(tmp_path):
    store = await Store.open(tmp_path)
    account = await store.account_for("test", "u", now=100.0)
    assert await store.add_job(job("a", account.id), quota_limit=1)
    assert not await store.add_job(job("b", account.id, seq=2), quota_limit=1)
    assert await store.job("b") is None  # nothing written for a refused job
    assert await store.used_today(account.id, "2027-01-15") == 1
    assert await store.mark_failed("a", "boom", now=101.0)
    assert not await store.mark_failed("a", "boom again", now=102.0)  # refunded once
    assert await store.used_today(account.id, "2027-01-15") == 0
    await store.close()


async def test_done_is_refused_for_a_cancelled_job(tmp_path):
    store = await Store.open(tmp_path)
    account = await store.account_for("test", "u", now=100.0)
    await store.add_job(job("a", account.id), quota_limit=5)
    await store.mark_running(["a"], now=101.0)
    await store.mark_cancelled("a", now=102.0)
    assert not await store.mark_done("a", seed=1, steps=4, seconds=1.0, deliver_after=0.0, now=103.0)
    assert (await store.job("a")).status == "cancelled"
    await store.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; permissions cannot be tested")
async def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="data_dir"):
            await Store.open(tmp_path / "data")
    finally:
        tmp_path.chmod(0o700)


async def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"\[bot\] data_dir"):
        await Store.open(blocker)
