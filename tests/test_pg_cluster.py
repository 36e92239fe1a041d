"""The throw-away PostgreSQL harness (tests/pg_cluster.py) and its fixtures (tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.pg_cluster import PgCluster, postgres_available


def psql_url(cluster: PgCluster, url: str, sql: str) -> str:
    """A plain psql client on a URL, as an application would connect."""
    result = subprocess.run([str(cluster.bin_dir / "psql"), url, "-X", "-A", "-t", "-c", sql],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[PgCluster]:
    """A server of this module's own, for the tests that restart and kill it."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    with PgCluster.temporary(prefix="restyle-pg-private-") as cluster:
        cluster.start()
        yield cluster


def test_the_session_server_answers_on_its_url(pg_cluster):
    assert pg_cluster.url == f"postgresql://restyle@127.0.0.1:{pg_cluster.port}/postgres"
    assert psql_url(pg_cluster, pg_cluster.url, "select 1") == "1"
    assert pg_cluster.psql("show server_encoding") == "UTF8"
    assert pg_cluster.psql("show listen_addresses") == "127.0.0.1"
    assert pg_cluster.psql("show max_connections") == "200"


def test_create_database_gives_distinct_databases(pg_cluster):
    a = pg_cluster.create_database("harness_a")
    b = pg_cluster.create_database("harness_b")
    try:
        assert a != b and a.endswith("/harness_a") and b.endswith("/harness_b")
        psql_url(pg_cluster, a, "create table only_in_a (x int)")
        assert psql_url(pg_cluster, a, "select current_database()") == "harness_a"
        assert psql_url(pg_cluster, b, "select count(*) from pg_tables where tablename = 'only_in_a'") == "0"
    finally:
        pg_cluster.drop_database("harness_a")
        pg_cluster.drop_database("harness_b")


@pytest.mark.parametrize("run", [1, 2])
def test_pg_url_is_a_fresh_database_per_test(pg_cluster, pg_url, run):
    # Both runs create the same table: the second would fail if they shared a database.
    assert pg_url.startswith(f"postgresql://restyle@127.0.0.1:{pg_cluster.port}/t_")
    psql_url(pg_cluster, pg_url, "create table jobs (id int primary key)")
    psql_url(pg_cluster, pg_url, f"insert into jobs values ({run})")
    assert psql_url(pg_cluster, pg_url, "select string_agg(id::text, ',') from jobs") == str(run)


def test_restart_keeps_the_data_and_the_port(private_cluster):
    pg = private_cluster
    url = pg.create_database("restart_check")
    psql_url(pg, url, "create table t (x text); insert into t values ('kept')")
    port, pid = pg.port, pg.pid
    pg.restart()
    assert pg.running and pg.pid != pid
    assert pg.port == port and pg.url_for("restart_check") == url
    assert psql_url(pg, url, "select x from t") == "kept"


def test_kill_then_start_recovers_committed_data(private_cluster):
    pg = private_cluster
    url = pg.create_database("crash_check")
    psql_url(pg, url, "create table t (x int)")
    psql_url(pg, url, "insert into t select generate_series(1, 1000)")
    port = pg.port
    pg.kill()  # right after the commit: it must survive
    assert not pg.running
    with pytest.raises(RuntimeError):
        pg.psql("select 1")
    pg.start()
    assert pg.port == port
    assert psql_url(pg, url, "select count(*) from t") == "1000"
    assert "not properly shut down" in pg.log_tail(50)


def test_stop_is_safe_twice_and_before_any_start(pg_cluster_factory):
    never_started = pg_cluster_factory()
    never_started.stop()
    never_started.stop()
    assert not never_started.running
    with pytest.raises(RuntimeError):
        never_started.url


def test_a_stopped_server_starts_again_on_its_port(private_cluster):
    pg = private_cluster
    port = pg.port
    pg.stop()
    pg.stop()
    assert not pg.running
    pg.start()
    assert pg.port == port and pg.psql("select 2") == "2"
