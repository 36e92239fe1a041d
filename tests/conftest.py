"""Shared pytest fixtures."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.pg_cluster import PgCluster, postgres_available
from tests.teardown_watchdog import pytest_runtest_teardown  # noqa: F401  (a hook: see its module)

# ---------------------------------------------------------------- PostgreSQL (tests/pg_cluster.py)


# The fixtures that start (or are) a PostgreSQL server; tests/test_pg_cluster.py has its own.
PG_FIXTURES = frozenset({"pg_cluster", "pg_url", "pg_cluster_factory", "private_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `postgres` every test that needs a PostgreSQL server: it asks for one of
    PG_FIXTURES, or runs as the "postgresql" case of a database parameter (the store fixture
    here, the backend fixtures of tests/test_service.py and tests/test_worker.py), which reach
    the server through getfixturevalue, out of pytest's sight."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        if on_postgres or PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throw-away PostgreSQL server for the whole session (skips when PostgreSQL is missing).
    Share it, never stop or restart it: a test that restarts or kills a server takes its own
    from pg_cluster_factory. Its folder comes from make_root (/dev/shm or /tmp), not pytest's tmp dir:
    as root the server runs as the postgres user, who cannot enter /tmp/pytest-of-root."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    cluster = PgCluster.temporary(prefix="restyle-pg-session-")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg_url(pg_cluster: PgCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database of its own for this test on the session server; its URL
    (postgresql://restyle@127.0.0.1:PORT/t_<test>_<random>). Dropped after the test."""
    test = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"t_{test}_{uuid.uuid4().hex[:10]}"
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_cluster_factory() -> Iterator[Callable[..., PgCluster]]:
    """Makes private servers (not started; PgCluster.temporary's arguments) for tests that stop,
    restart or kill one; all are stopped and removed after the test."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    made: list[PgCluster] = []

    def make(**kwargs) -> PgCluster:
        cluster = PgCluster.temporary(**kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path):
    """An open Store on each database in turn (the same behaviour on both), closed after."""
    from bot.store import Store

    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    opened = await Store.open(tmp_path, url)
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def _stop_unclosed_harnesses() -> Iterator[None]:
    """A test that fails before closing its Harness (tests/harness/service.py) would leave the
    SQLite connection's thread running, and pytest would hang at exit instead of reporting."""
    yield
    module = sys.modules.get("tests.harness.service")
    if module is None:
        return
    while module.Harness.unclosed:
        module.Harness.unclosed.pop().abandon()
