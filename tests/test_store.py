"""The store on its own: schema and upgrades (SQLite), quota accounting, the worker's and the
front ends' leases, pictures, and storage faults; on SQLite and PostgreSQL where it matters."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from bot.store import MIGRATIONS, JobRecord, Store, StoreError
from bot.store.jobs import JOB_COLUMNS, job_values
from tests.fakes import wait_until

DAY = "2027-01-15"


def job(job_id: str, account_id: int, **changes) -> JobRecord:
    values = dict(
        id=job_id, account_id=account_id, platform="test", platform_user_id="u", reply={"chat": 1},
        prompt="p", negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None,
        width=64, height=64, batch_key="64x64:4:2", tier="free", rank=0.0, seq=1, status="queued",
        created_at=100.0, quota_day=DAY,
    )  # fmt: skip
    values.update(changes)
    return JobRecord(**values)


async def add(store: Store, record: JobRecord, *, rank: float | None = None, quota_limit: int = 100, **kwargs):
    """add_job with a fixed rank (the created_at unless given)."""
    fixed = record.created_at if rank is None else rank
    return await store.add_job(record, quota_limit=quota_limit, max_active=100, rank_for=lambda last: fixed, **kwargs)


async def finish(store: Store, job_id: str, worker: str, result: bytes = b"result", now: float = 200.0) -> bool:
    return await store.finish_job(job_id, worker, result, seed=1, steps=4, seconds=1.0, deliver_after=0.0, now=now)


@pytest.fixture
async def account(store):
    return (await store.account_for("test", "u", now=100.0)).id


# SQLite: schema, upgrades, files -----------------------------------------------------------------


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


async def test_schema_3_database_upgrades_and_its_picture_files_move_into_the_table(tmp_path):
    # As the version before schema 4 left it: the tables of MIGRATIONS[:3], a queued job, and its
    # input picture as a file in data_dir/pictures.
    db = sqlite3.connect(tmp_path / "restyle.sqlite3")
    db.executescript("CREATE TABLE schema_version (version INTEGER NOT NULL);")
    for version, script in enumerate(MIGRATIONS[:3], start=1):
        db.executescript(script)
        db.execute("INSERT INTO schema_version VALUES (?)", (version,))
    db.execute("INSERT INTO accounts (id, tier, created_at) VALUES (1, 'free', 100.0)")
    old = job("old", 1)
    columns = (
        "id", "account_id", "platform", "platform_user_id", "prompt", "negative_prompt", "strength", "seed",
        "steps", "output_format", "width", "height", "batch_key", "tier", "rank", "seq", "status", "created_at",
        "quota_day",
    )  # fmt: skip
    db.execute(
        f"INSERT INTO jobs (reply_json, {', '.join(columns)}) VALUES (?, {', '.join('?' * len(columns))})",
        ['{"chat":1}', *(getattr(old, c) for c in columns)],
    )
    db.commit()
    db.close()
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "old.in.img").write_bytes(b"input bytes")
    (pictures / "gone.in.img").write_bytes(b"a purged job's picture")

    store = await Store.open(tmp_path)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        assert await store.picture("old", "input") == b"input bytes"
        assert not await store.has_picture("gone", "input")
        assert list(pictures.glob("*.img")) == []
        assert (await store.job("old")).status == "queued"
        assert await store.position("old") == 0
    finally:
        await store.close()


async def test_data_dir_and_database_files_are_readable_by_their_owner_only(tmp_path):
    data = tmp_path / "fresh" / "data"
    store = await Store.open(data)
    account = (await store.account_for("test", "u", now=100.0)).id
    await add(store, job("a", account))  # a write: the -wal and -shm files exist now
    db_file = data / "restyle.sqlite3"
    modes = {p.name: p.stat().st_mode & 0o777 for p in (data, db_file, data / "restyle.sqlite3-wal",
                                                       data / "restyle.sqlite3-shm")}  # fmt: skip
    await store.close()
    assert modes == {"data": 0o700, "restyle.sqlite3": 0o600, "restyle.sqlite3-wal": 0o600, "restyle.sqlite3-shm": 0o600}
    # A database an older version left readable by everyone is narrowed when opened.
    db_file.chmod(0o644)
    store = await Store.open(data)
    await store.close()
    assert db_file.stat().st_mode & 0o777 == 0o600


async def test_a_purged_prompt_and_picture_leave_no_copy_in_the_database_files(tmp_path):
    store = await Store.open(tmp_path)
    account = (await store.account_for("test", "u", now=100.0)).id
    prompt, picture = "a secret prompt 7f3a9c", b"PICTURE-BYTES-1b2d" * 200
    await add(store, job("a", account, prompt=prompt), picture=picture)
    await store.db.fetch_all("PRAGMA wal_checkpoint(TRUNCATE)")  # in the database file itself, not only the WAL
    [claimed] = await store.claim_batch(1, "w", now=101.0, lease_until=160.0)
    await finish(store, claimed.id, "w", result=b"RESULT-BYTES-9e8f" * 200)
    await store.mark_delivered("a", now=201.0)

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("restyle.sqlite3*"))

    assert prompt.encode() in on_disk() and b"RESULT-BYTES-9e8f" in on_disk()  # the scan finds them while kept
    assert await store.purge_finished(before=1000.0) == ["a"]
    left = on_disk()
    assert prompt.encode() not in left and b"PICTURE-BYTES-1b2d" not in left and b"RESULT-BYTES-9e8f" not in left
    assert await store.db.fetch_value("PRAGMA secure_delete") == 1
    await store.close()


def _store_open_error(data_dir: Path) -> str:
    """The StoreError message Store.open gives for `data_dir`, or what went wrong instead."""
    try:
        asyncio.run(Store.open(data_dir))
    except StoreError as exc:
        return str(exc)
    except Exception as exc:  # reported to the test, which fails on it
        return f"not a StoreError: {exc!r}"
    return "no error: the folder was writable"


def _store_open_error_as_nobody(data_dir: Path) -> str:
    """_store_open_error in a forked child that has dropped root for the 'nobody' user: root
    writes anywhere, and CI runs the suite as root."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop privileges to")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, try, report through the pipe, never return into pytest
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            message = _store_open_error(data_dir)
        except BaseException as exc:
            message = f"the child failed: {exc!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


@pytest.mark.parametrize("where", ["inside", "itself"], ids=["folder-inside-a-locked-one", "locked-folder"])
def test_unwritable_data_dir_is_a_clear_error(where):
    # A folder of its own in /tmp (pytest's tmp folders are 0700: 'nobody' could not even look).
    parent = Path(tempfile.mkdtemp(prefix="restyle-unwritable-"))
    try:
        parent.chmod(0o755)
        locked = parent / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)  # whatever the umask
        opened = _store_open_error_as_nobody if os.geteuid() == 0 else _store_open_error
        message = opened(locked / "data" if where == "inside" else locked)
        assert "[bot] data_dir" in message and "Permission denied" in message, message
    finally:
        shutil.rmtree(parent, ignore_errors=True)


async def test_data_dir_that_is_a_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"\[bot\] data_dir"):
        await Store.open(blocker)


# Both backends ---------------------------------------------------------------------------------


async def test_quota_is_spent_atomically_and_refunded_once(store, account):
    assert isinstance(await add(store, job("a", account), quota_limit=1), JobRecord)
    assert await add(store, job("b", account), quota_limit=1) == "quota"
    assert await store.job("b") is None  # nothing written for a refused job
    assert await store.used_today(account, DAY) == 1
    assert await store.mark_failed("a", "boom", now=101.0)
    assert not await store.mark_failed("a", "boom again", now=102.0)  # refunded once
    assert await store.used_today(account, DAY) == 0
    assert isinstance(await add(store, job("c", account), quota_limit=1), JobRecord)
    assert await store.mark_cancelled("c", now=103.0) is not None
    assert await store.mark_cancelled("c", now=104.0) is None
    assert await store.used_today(account, DAY) == 0


async def test_queue_limit_counts_waiting_and_running_jobs(store, account):
    limit = dict(quota_limit=100, max_active=2, rank_for=lambda last: 0.0)
    assert isinstance(await store.add_job(job("a", account), **limit), JobRecord)
    await store.claim_batch(1, "w", now=101.0, lease_until=160.0)
    assert isinstance(await store.add_job(job("b", account), **limit), JobRecord)
    assert await store.add_job(job("c", account), **limit) == "queue_limit"
    assert await store.job("c") is None
    assert await store.used_today(account, DAY) == 2


async def test_cancelling_a_members_jobs_is_one_step_a_claim_takes_all_of_them_or_none(store, account):
    for i, job_id in enumerate(("a", "b", "c")):
        await add(store, job(job_id, account, created_at=100.0 + i))
    await store.claim_batch(1, "w1", now=101.0, lease_until=160.0)  # "a" runs; "b" and "c" wait
    cancelling = asyncio.ensure_future(store.mark_cancelled_all(["a", "b", "c"], now=102.0))
    await asyncio.sleep(0)  # the cancel has begun (not a wait for time: one turn of the loop)
    claimed = await store.claim_batch(4, "w2", now=102.0, lease_until=160.0)
    cancelled = await cancelling
    assert [j.id for j in cancelled] == ["a", "b", "c"]
    # The claim came after the whole cancel (on SQLite always: the cancel holds the write lock)
    # or, on PostgreSQL, possibly before it began: never between its jobs.
    assert {j.id for j in claimed} in (set(), {"b", "c"})
    waiting = "running" if claimed else "queued"
    assert [j.status for j in cancelled] == ["running", waiting, waiting]  # as they were
    assert {(await store.job(j)).status for j in "abc"} == {"cancelled"}
    assert await store.used_today(account, DAY) == 0  # each gave its quota unit back
    assert await store.mark_cancelled_all(["a", "b"], now=103.0) == []  # ended already


async def test_finish_is_refused_for_a_cancelled_job(store, account):
    await add(store, job("a", account))
    [claimed] = await store.claim_batch(1, "w1", now=101.0, lease_until=160.0)
    assert claimed.id == "a" and claimed.worker_id == "w1"
    cancelled = await store.mark_cancelled("a", now=102.0)
    assert cancelled.status == "running" and cancelled.worker_id == "w1"
    assert not await finish(store, "a", "w1")
    assert (await store.job("a")).status == "cancelled"
    assert not await store.has_picture("a", "result")


async def test_only_the_worker_holding_the_job_stores_its_result(store, account):
    await add(store, job("a", account))
    await store.claim_batch(1, "w1", now=101.0, lease_until=130.0)
    assert await store.requeue_expired(now=120.0) == []  # lease still good
    assert await store.renew_lease("w1", ["a"], lease_until=140.0) == 1
    assert await store.requeue_expired(now=141.0) == ["a"]  # w1 stopped renewing
    assert await store.renew_lease("w1", ["a"], lease_until=200.0) == 0
    [again] = await store.claim_batch(1, "w2", now=142.0, lease_until=200.0)
    assert again.id == "a" and again.worker_id == "w2"
    assert not await finish(store, "a", "w1", b"from w1")  # the dead worker came back too late
    assert not await store.mark_failed("a", "w1 gave up", now=150.0, worker_id="w1")
    assert await finish(store, "a", "w2", b"from w2")
    assert not await finish(store, "a", "w2", b"twice")
    assert (await store.job("a")).status == "done"
    assert await store.picture("a", "result") == b"from w2"
    kinds = await store.db.fetch_all("SELECT kind FROM pictures WHERE job_id = ?", "a")
    assert [row["kind"] for row in kinds] == ["result"]


async def test_dead_workers_jobs_go_back_at_their_original_rank(store, account):
    await add(store, job("a", account), rank=10.0)
    await add(store, job("b", account), rank=20.0)
    await store.claim_batch(1, "dead", now=101.0, lease_until=130.0)
    await add(store, job("c", account), rank=30.0)
    assert await store.position("b") == 0
    assert await store.requeue_expired(now=131.0) == ["a"]
    requeued = await store.job("a")
    assert (requeued.status, requeued.rank, requeued.worker_id) == ("queued", 10.0, None)
    assert [await store.position(j) for j in ("a", "b", "c")] == [0, 1, 2]
    assert [j.id for j in await store.claim_batch(4, "alive", now=132.0, lease_until=190.0)] == ["a", "b", "c"]


async def test_exactly_one_front_end_delivers_until_its_lease_runs_out(store, account):
    await add(store, job("a", account))
    await store.claim_batch(1, "w", now=101.0, lease_until=160.0)
    assert not await store.claim_delivery("a", "fe1", now=102.0, until=130.0)  # not finished yet
    assert await finish(store, "a", "w", now=103.0)
    assert await store.undelivered_jobs(["test"], now=104.0) == ["a"]
    first, second = await asyncio.gather(
        store.claim_delivery("a", "fe1", now=104.0, until=130.0),
        store.claim_delivery("a", "fe2", now=104.0, until=130.0),
    )
    assert [first, second].count(True) == 1
    holder, other = ("fe1", "fe2") if first else ("fe2", "fe1")
    assert await store.undelivered_jobs(["test"], now=110.0) == []
    assert not await store.claim_delivery("a", other, now=120.0, until=150.0)
    assert await store.claim_delivery("a", holder, now=125.0, until=140.0)  # renewing is fine
    assert await store.claim_delivery("a", other, now=141.0, until=170.0)  # the holder went quiet
    assert not await store.claim_delivery("a", holder, now=142.0, until=170.0)
    await store.mark_delivered("a", now=143.0)
    assert not await store.claim_delivery("a", other, now=144.0, until=170.0)
    assert await store.undelivered_jobs(["test"], now=200.0) == []


async def test_one_process_at_a_time_holds_a_claim_until_it_ends_or_runs_out(store):
    first, second = await asyncio.gather(store.claim_marker("sync", "p1", 100.0, 160.0),
                                         store.claim_marker("sync", "p2", 100.0, 160.0))  # fmt: skip
    assert [first, second].count(True) == 1
    holder, other = ("p1", "p2") if first else ("p2", "p1")
    assert await store.claim_marker("sync", holder, 110.0, 170.0)  # renewing is fine
    assert not await store.claim_marker("sync", other, 120.0, 180.0)
    assert await store.claim_marker("sync", other, 171.0, 230.0)  # the holder's claim ran out
    await store.release_marker("sync", holder, 172.0)  # not the holder any more: no effect
    assert not await store.claim_marker("sync", holder, 173.0, 230.0)
    await store.release_marker("sync", other, 174.0)
    assert await store.claim_marker("sync", holder, 175.0, 230.0)  # released: free at once


async def test_input_picture_is_stored_with_the_job_or_not_at_all(store, account):
    stored = await add(store, job("a", account), quota_limit=1, picture=b"input a")
    assert isinstance(stored, JobRecord)
    assert await store.picture("a", "input") == b"input a"
    assert await add(store, job("b", account), quota_limit=1, picture=b"input b") == "quota"
    assert not await store.has_picture("b", "input")
    again = await add(store, job("c", account), quota_limit=5, picture_from="a")
    assert isinstance(again, JobRecord)
    assert await store.picture("c", "input") == b"input a"
    with pytest.raises(StoreError, match="gone"):
        await add(store, job("d", account), quota_limit=5, picture_from="missing")
    assert await store.job("d") is None  # the whole add was rolled back
    assert await store.used_today(account, DAY) == 2


# PostgreSQL: several workers claiming at once ----------------------------------------------------


async def _fill(store: Store, account: int, count: int) -> None:
    for i in range(count):
        await add(store, job(f"j{i:02}", account, batch_key=f"k{i % 3}"), rank=float(i))


async def _claim_until_empty(store: Store, worker: str) -> list[str]:
    taken = []
    while batch := await store.claim_batch(2, worker, now=101.0, lease_until=160.0):
        taken += [j.id for j in batch]
        await asyncio.sleep(0)
    return taken


async def test_concurrent_claims_on_one_postgresql_store_get_disjoint_jobs(pg_url, tmp_path):
    store = await Store.open(tmp_path, pg_url)
    try:
        account = (await store.account_for("test", "u", now=100.0)).id
        await _fill(store, account, 30)
        results = await asyncio.gather(*(_claim_until_empty(store, f"w{i}") for i in range(4)))
        taken = [job_id for result in results for job_id in result]
        assert sorted(taken) == [f"j{i:02}" for i in range(30)]  # each job exactly once
        for i, result in enumerate(results):
            assert {j.worker_id for j in await store.jobs(result)} <= {f"w{i}"}
    finally:
        await store.close()


async def test_concurrent_claims_from_two_postgresql_stores_get_disjoint_jobs(pg_url, tmp_path):
    first = await Store.open(tmp_path / "a", pg_url)
    second = await Store.open(tmp_path / "b", pg_url)
    try:
        account = (await first.account_for("test", "u", now=100.0)).id
        await _fill(first, account, 30)
        one, two = await asyncio.gather(_claim_until_empty(first, "w1"), _claim_until_empty(second, "w2"))
        assert not set(one) & set(two)
        assert sorted(one + two) == [f"j{i:02}" for i in range(30)]
    finally:
        await first.close()
        await second.close()


async def test_two_postgresql_stores_never_both_take_a_claim(pg_url, tmp_path):
    first = await Store.open(tmp_path / "a", pg_url)
    second = await Store.open(tmp_path / "b", pg_url)
    try:
        for i in range(10):
            taken = await asyncio.gather(first.claim_marker(f"sync{i}", "p1", 100.0, 160.0),
                                         second.claim_marker(f"sync{i}", "p2", 100.0, 160.0))  # fmt: skip
            assert taken.count(True) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_process_started_before_postgresql_waits_for_it(pg_cluster_factory, tmp_path, caplog):
    cluster = pg_cluster_factory()
    cluster.start()
    url = cluster.url
    cluster.stop()

    async def start_later() -> None:
        # The server comes up only once the store has failed to reach it and said it will wait.
        while not any("cannot be reached yet" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.02)
        await asyncio.to_thread(cluster.start)

    starter = asyncio.create_task(start_later())
    store = await Store.open(tmp_path, url, wait_s=30)
    await starter
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()


async def test_unreachable_postgresql_is_a_clear_error_once_the_wait_is_over(tmp_path):
    with pytest.raises(StoreError, match=r"PostgreSQL at postgresql://restyle:\*\*\*@127\.0\.0\.1:1/x cannot be reached"):
        await Store.open(tmp_path, "postgresql://restyle:secret@127.0.0.1:1/x", wait_s=0.6)


async def test_a_request_key_is_stored_with_its_job_and_queues_once_per_platform(store, account):
    first = await add(store, job("a", account, request_key="u/42"), quota_limit=5)
    assert isinstance(first, JobRecord) and (await store.job("a")).request_key == "u/42"
    again = await add(store, job("b", account, request_key="u/42"), quota_limit=5)
    assert isinstance(again, JobRecord) and again.id == "a"  # the stored one; nothing written
    assert await store.job("b") is None and await store.used_today(account, DAY) == 1
    assert (await store.job_for_request("test", "u/42")).id == "a"
    assert await store.job_for_request("other", "u/42") is None
    # The same key on another platform, and jobs without a key, are their own.
    assert isinstance(await add(store, job("c", account, platform="other", request_key="u/42")), JobRecord)
    assert isinstance(await add(store, job("d", account)), JobRecord)
    assert isinstance(await add(store, job("e", account)), JobRecord)
    assert await store.used_today(account, DAY) == 4
    with pytest.raises(StoreError):  # the database itself refuses a second one
        await store.db.execute(
            "INSERT INTO jobs (id, account_id, platform, platform_user_id, reply_json, prompt, strength, seed, steps,"
            " width, height, batch_key, tier, rank, seq, status, created_at, quota_day, request_key)"
            " VALUES ('f', ?, 'test', 'u', '{}', 'p', 0.5, 1, 4, 64, 64, 'k', 'free', 0, 99, 'queued', 1, ?, 'u/42')",
            account, DAY,
        )


async def test_sqlite_commits_leave_copying_the_wal_to_a_thread_of_its_own(tmp_path):
    """SQLite copies the WAL into the database file inside the commit that crosses 1000 pages
    (64 MB here), on the connection's only thread: a ~75 ms stall every ~0.7 s for a worker
    storing 590 KB results at 100 jobs/s. A copier copies it as commits come instead."""
    store = await Store.open(tmp_path, "")
    try:
        db_file = tmp_path / "restyle.sqlite3"
        await store.db.execute("CREATE TABLE blobs (data BLOB NOT NULL)")
        await wait_until(lambda: db_file.stat().st_size > 0, what="the schema copied")
        before = db_file.stat().st_size
        blob = os.urandom(1 << 20)
        for _ in range(8):  # 8 MB: 128 pages, far from the writer's own checkpoint
            await store.db.execute("INSERT INTO blobs (data) VALUES (?)", blob)

        async def copied() -> bool:
            return db_file.stat().st_size >= before + 8 * (1 << 20)

        await wait_until(copied, what="the WAL copied into the database file")
        assert await store.db.fetch_value("SELECT COUNT(*) FROM blobs") == 8
    finally:
        await store.close()


async def test_a_statement_is_one_trip_to_the_sqlite_thread(tmp_path, monkeypatch):
    """Each trip to aiosqlite's thread is a GIL hand-over both ways and a wake-up of the event
    loop; aiosqlite's cursor API takes three for a read (execute, fetchall, close), two for a
    write, and a fast engine's worker waited on them (bench/worker_duty.py)."""
    store = await Store.open(tmp_path)
    db = store.db
    try:
        await db.execute("CREATE TABLE t (x INTEGER)")
        trips: list[str] = []
        original = db._conn._execute

        async def counted(fn, *args, **kwargs):
            trips.append(getattr(fn, "__name__", repr(fn)))
            return await original(fn, *args, **kwargs)

        monkeypatch.setattr(db._conn, "_execute", counted)
        assert await db.execute("INSERT INTO t VALUES (1), (2)") == 2
        assert len(trips) == 1, trips
        assert [tuple(r) for r in await db.fetch_all("SELECT x FROM t ORDER BY x")] == [(1,), (2,)]
        assert len(trips) == 2, trips
        assert await db.execute("UPDATE t SET x = x + 1 WHERE x = ?", 9) == 0
        assert len(trips) == 3, trips
        with pytest.raises(StoreError):  # errors still come back as the store's
            await db.fetch_all("SELECT nothing FROM nowhere")
    finally:
        await store.close()


async def test_a_claim_is_one_trip_to_the_sqlite_thread(tmp_path, monkeypatch):
    """The claim is on the path a fast engine waits on: one statement, its own transaction."""
    store = await Store.open(tmp_path)
    account = (await store.account_for("test", "u", now=100.0)).id
    for name in ("a", "b", "c"):
        await add(store, job(name, account))
    trips: list[str] = []
    original = store.db._conn._execute

    async def counted(fn, *args, **kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(store.db._conn, "_execute", counted)
    claimed = await store.claim_batch(2, "w", now=101.0, lease_until=160.0)
    assert [(j.id, j.status, j.worker_id) for j in claimed] == [("a", "running", "w"), ("b", "running", "w")]
    assert len(trips) == 1, trips
    monkeypatch.undo()
    assert not store.db._conn.in_transaction  # committed
    assert [j.id for j in await store.waiting_jobs(10)] == ["c"]
    await store.close()


async def test_a_claim_cancelled_on_its_way_leaves_its_jobs_in_line(tmp_path):
    """A stopping worker cancels its claim-ahead; the claim is one statement with no
    transaction to roll back, and it still runs on aiosqlite's thread once sent."""
    store = await Store.open(tmp_path)
    account = (await store.account_for("test", "u", now=100.0)).id
    try:
        for name in ("a", "b"):
            await add(store, job(name, account))
        for _ in range(20):  # the cancel lands before or after the statement was sent: both must be clean
            task = asyncio.create_task(store.claim_batch(2, "w", now=101.0, lease_until=160.0))
            for _ in range(1000):  # yield (no sleep) until it holds the write lock: its statement is on the way
                if store.db._write_lock.locked():
                    break
                await asyncio.sleep(0)
            assert store.db._write_lock.locked()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert [(j.id, j.status, j.worker_id) for j in await store.jobs(["a", "b"])] == [
                ("a", "queued", None), ("b", "queued", None)
            ]
        assert [j.id for j in await store.claim_batch(2, "w", now=102.0, lease_until=160.0)] == ["a", "b"]
    finally:
        await store.close()


async def test_a_transaction_cancelled_while_it_begins_leaves_no_transaction_open(tmp_path):
    """App.stop cancels a batch being stored; its BEGIN still runs on aiosqlite's thread."""
    store = await Store.open(tmp_path)
    db = store.db
    try:
        await db.execute("CREATE TABLE t (x INTEGER)")

        async def write() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO t VALUES (1)")

        for _ in range(20):  # the cancel lands before or after the BEGIN reached SQLite: both must be clean
            task = asyncio.create_task(write())
            for _ in range(1000):  # yield (no sleep) until it holds the lock: its BEGIN is on the way
                if db._write_lock.locked():
                    break
                await asyncio.sleep(0)
            assert db._write_lock.locked()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert not db._conn.in_transaction
        async with db.transaction():  # and the next one begins and commits
            await db.execute("INSERT INTO t VALUES (2)")
        assert [tuple(r) for r in await db.fetch_all("SELECT x FROM t")] == [(2,)]
    finally:
        await store.close()


async def test_two_stores_opening_one_new_database_at_the_same_moment_both_get_in(tmp_path):
    for round_ in range(10):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        stores = await asyncio.gather(Store.open(folder), Store.open(folder), return_exceptions=True)
        opened = [s for s in stores if isinstance(s, Store)]
        for store in opened:
            await store.close()
        assert len(opened) == 2, stores


# Strength sweeps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_database_from_before_sweeps_gets_the_sweep_column_and_keeps_its_jobs(
    database, request, tmp_path, monkeypatch
):
    url = request.getfixturevalue("pg_url") if database == "postgresql" else ""
    monkeypatch.setattr("bot.store.schema.MIGRATIONS", MIGRATIONS[:-1])  # the schema before sweeps
    old = await Store.open(tmp_path, url)
    account = (await old.account_for("test", "u", now=100.0)).id
    columns = [c for c in JOB_COLUMNS if c != "sweep_id"]
    values = [v for c, v in zip(JOB_COLUMNS, job_values(job("old", account)), strict=True) if c != "sweep_id"]
    await old.db.execute(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", *values)
    assert await old.schema_version() == len(MIGRATIONS) - 1
    await old.close()
    monkeypatch.undo()

    store = await Store.open(tmp_path, url)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        kept = await store.job("old")
        assert kept is not None and kept.sweep_id is None and kept.status == "queued"
        lead = job("lead", account, sweep_id="lead", request_key="k")
        added = await store.add_jobs(
            [lead, job("second", account, sweep_id="lead")], quota_limit=100, max_active=100, rank_for=lambda _: 5.0,
            picture=b"input",
        )  # fmt: skip
        assert isinstance(added, list) and [j.id for j in await store.sweep_jobs("lead")] == ["lead", "second"]
        assert await store.picture("second", "input") == b"input"
    finally:
        await store.close()


async def test_a_sweep_that_does_not_fit_writes_nothing(store, account):
    three = [job(name, account, sweep_id="a") for name in ("a", "b", "c")]
    limits = dict(max_active=100, rank_for=lambda _: 1.0, picture=b"input")
    assert await store.add_jobs(three, quota_limit=2, **limits) == "quota"
    assert await store.add_jobs(three, quota_limit=3, **{**limits, "max_active": 2}) == "queue_limit"
    assert await store.count_by_status() == {} and await store.used_today(account, DAY) == 0
    added = await store.add_jobs(three, quota_limit=3, **limits)
    assert isinstance(added, list) and [j.seq - added[0].seq for j in added] == [0, 1, 2]
    assert {j.rank for j in added} == {1.0} and await store.used_today(account, DAY) == 3


async def test_adding_to_a_reply_changes_only_the_keys_given_and_records_a_step_once(store: Store):
    account = (await store.account_for("test", "u", 0.0)).id
    job = JobRecord(
        id="j1", account_id=account, platform="test", platform_user_id="u", reply={"chat_id": 1, "lang": "es"},
        prompt="p", negative_prompt=None, strength=0.5, seed=1, steps=4, output_format=None, width=64, height=64,
        batch_key="k", tier="free", rank=0.0, seq=0, status="queued", created_at=1.0, quota_day="2027-01-15",
    )  # fmt: skip
    await store.add_job(job, quota_limit=9, max_active=9, rank_for=lambda _: 1.0)
    await store.add_to_reply("j1", {}, sent="album")
    await store.add_to_reply("j1", {"status_id": 7, "chat_id": 2})  # a front end's note, written meanwhile
    await store.add_to_reply("j1", {}, sent="album")  # a retry recording it again
    await store.add_to_reply("j1", {}, sent="buttons")
    stored = await store.job("j1")
    assert stored is not None
    assert stored.reply == {"chat_id": 2, "lang": "es", "status_id": 7, "sent": ["album", "buttons"]}
    await store.add_to_reply("gone", {"status_id": 8})  # purged meanwhile: nothing to add to, no error
