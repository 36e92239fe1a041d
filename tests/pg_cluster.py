"""A real, throw-away PostgreSQL server for tests and benchmarks.

    with PgCluster.temporary() as pg:      # a fresh folder (make_root), removed on exit
        pg.start()                          # initdb (first time) + start, waits until it accepts connections
        url = pg.create_database("demo")    # postgresql://restyle@127.0.0.1:PORT/demo
        pg.restart()                        # same data, same port
        pg.kill()                           # SIGKILL: a crash; the next start() runs WAL recovery

The server listens on 127.0.0.1 only, on a free port picked at the first start and kept for
the cluster's life (clients can reconnect after a restart), trusts every local connection for the
superuser ``restyle``, and runs with fsync off (see DEFAULT_SETTINGS): fast, and never for data
anyone keeps.

initdb and postgres refuse to run as root; as root the server runs as the ``postgres`` system
user, so the cluster's folder and every folder above it must be reachable by that user.
pytest's own tmp folders (/tmp/pytest-of-root, mode 700) are not: use ``make_root()`` or
``PgCluster.temporary()``, which create the folder in /dev/shm (when roomy) or /tmp.

The server process is a child of the Python process that started it (not daemonised by pg_ctl),
so it is reaped when it exits even where the container's init reaps nothing, and an atexit hook
stops every server still running when Python exits. The harness needs only PostgreSQL's own
programs (initdb, postgres, psql, pg_isready), no Python driver.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "restyle"
SERVER_USER = "postgres"  # the system user the server runs as when we are root
STARTUP_TIMEOUT_S = 30.0
_CONF_MARK = "# --- restyle-bot test cluster ---"
# Speed over durability against a lost machine, never against a crashed server: with fsync off,
# what postgres wrote is in the kernel and survives kill(). synchronous_commit stays on, so a
# commit has reached the kernel when it returns (off, the last ~0.6 s of commits would live only
# in shared memory and kill() would lose them: crash tests would flake). Costs little: no fsync.
DEFAULT_SETTINGS: dict[str, str | int] = {
    "max_connections": 200,
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    # Each CREATE DATABASE writes its template (~7 MiB) to the WAL: checkpoint (cheap without
    # fsync) long before the default 1 GB of it piles up, in RAM when the cluster is in /dev/shm.
    "max_wal_size": "128MB",
    "min_wal_size": "32MB",
}
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
_RAM_DIR = "/dev/shm"
_RAM_DIR_MIN_FREE = 2 << 30  # Docker's default /dev/shm is 64 MiB: far too small for a cluster
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the NUL


def find_postgres_bin() -> Path | None:
    """The folder holding initdb and postgres: where PATH's initdb really lives, else the
    newest /usr/lib/postgresql/*/bin. None when there is none."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres")):
            return folder
    return None


def _client(bin_dir: Path, name: str) -> str | None:
    """A client program (psql, pg_isready): the server's own version first, else PATH's."""
    own = bin_dir / name
    if os.access(own, os.X_OK):
        return str(own)
    return shutil.which(name)


def postgres_available() -> str | None:
    """None when a throw-away server can be started here, else a one-line reason why not."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        return ("PostgreSQL server programs not found (no initdb on PATH nor in "
                "/usr/lib/postgresql/*/bin); install Debian's postgresql package")
    missing = [n for n in ("psql", "pg_isready") if _client(bin_dir, n) is None]
    if missing:
        return f"PostgreSQL client programs not found: {', '.join(missing)}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (f"running as root, and there is no {SERVER_USER!r} system user to run "
                    "initdb/postgres as (they refuse to run as root)")
    return None


def _reachable_by(user: pwd.struct_passwd, folder: Path) -> bool:
    """Whether `user` can walk down to `folder` (x on every folder above it), by mode bits."""
    folder = folder.resolve()
    for part in [*reversed(folder.parents), folder]:
        st = part.stat()
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid == user.pw_gid or st.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def make_root(prefix: str = "restyle-pg-") -> Path:
    """A new empty folder for a cluster, reachable by the server's user. In RAM (/dev/shm) when
    that has room to spare: initdb there takes half the time and CREATE DATABASE a seventh of
    what they take on this machine's disk. Else under the temp folder when the server's user can
    reach it (pytest's tmp dirs and a TMPDIR may be mode 700), else /tmp or /var/tmp.
    RESTYLE_PG_ROOT_PARENT names the parent folder outright."""
    server = pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None
    chosen = os.environ.get("RESTYLE_PG_ROOT_PARENT")
    if chosen:
        candidates = [chosen]
    else:
        candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp"]
        try:
            if shutil.disk_usage(_RAM_DIR).free >= _RAM_DIR_MIN_FREE:
                candidates.insert(0, _RAM_DIR)
        except OSError:
            pass
    for parent in dict.fromkeys(candidates):
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            continue
        if server is not None and not _reachable_by(server, Path(parent)):
            continue
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        root.chmod(0o755)
        return root
    raise RuntimeError(f"no folder among {candidates} that the {SERVER_USER!r} user can reach")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (nobody may reap it here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


# Strong references: a forgotten object still gets stopped (and its temporary folder removed).
_live_clusters: "set[PgCluster]" = set()
_temporary_clusters: "set[PgCluster]" = set()


@atexit.register
def _stop_leftovers() -> None:
    """A safety net: no server outlives the Python process that started it, and no temporary()
    folder either."""
    for cluster in list(_live_clusters | _temporary_clusters):
        try:
            cluster.stop("immediate")
        except Exception:
            pass
        try:
            cluster.close()
        except Exception:
            pass


class PgCluster:
    """One PostgreSQL server process with its data folder under `root`:
    root/data (the cluster), root/sock (its Unix socket), root/server.log (its log)."""

    def __init__(self, root: Path, *, settings: dict[str, str | int] | None = None,
                 startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        """`settings`: server settings over DEFAULT_SETTINGS (e.g. {"fsync": "on"} for a
        benchmark that must pay for durability), applied at every start."""
        self.root = Path(root).absolute()
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "server.log"
        self.startup_timeout = startup_timeout
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.port: int | None = self._configured_port()
        self._owns_root = False
        self._proc: subprocess.Popen | None = None
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            raise RuntimeError(postgres_available())
        self.bin_dir = bin_dir
        self._psql = _client(bin_dir, "psql")
        self._pg_isready = _client(bin_dir, "pg_isready")
        self._server_user = pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None

    @classmethod
    def temporary(cls, prefix: str = "restyle-pg-", **kwargs) -> "PgCluster":
        """A cluster in a new folder from make_root(); close() (or leaving `with`) removes it."""
        cluster = cls(make_root(prefix), **kwargs)
        cluster._owns_root = True
        _temporary_clusters.add(cluster)
        return cluster

    # ----------------------------------------------------------------- state

    @property
    def url(self) -> str:
        """postgresql://restyle@127.0.0.1:PORT/postgres"""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        if self.port is None:
            raise RuntimeError("the cluster has no port yet: start() it first")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        if self._proc is not None:  # we started it: ask the process, not a maybe-stale pid file
            return self._proc.pid if self._proc.poll() is None else None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def log_tail(self, n: int = 40) -> str:
        """The last n lines of the server's log ("" when there is none yet)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])

    # ----------------------------------------------------------- life cycle

    def start(self) -> None:
        """initdb on the first start, then start the server and wait until it accepts connections.
        A later start reuses the data and the port. Does nothing while it runs."""
        if self.running:
            return
        fresh = not (self.data_dir / "PG_VERSION").exists()
        if fresh:
            self._initdb()
        for attempt in range(3):
            if self.port is None:
                self.port = _free_port()
            self._write_conf()
            try:
                self._start_server()
                break
            except RuntimeError:
                # Another process took the freshly picked port between the pick and the bind:
                # pick again. A known port is never changed (clients reconnect to it).
                if fresh and attempt < 2 and "could not bind" in self.log_tail(20):
                    self.port = None
                    continue
                raise
        _live_clusters.add(self)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait until it has: mode "smart" waits for the clients to leave,
        "fast" ends their sessions (a clean shutdown), "immediate" quits without a shutdown
        checkpoint. Safe when never started, when already stopped, and after kill()."""
        try:
            sig = _STOP_SIGNALS[mode]
        except KeyError:
            raise ValueError(f"stop mode must be one of {tuple(_STOP_SIGNALS)}, not {mode!r}") from None
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            if not self._wait_gone(pid, self.startup_timeout):
                raise RuntimeError(f"PostgreSQL (pid {pid}) did not stop ({mode}) within "
                                   f"{self.startup_timeout:.0f} s\n--- server log ---\n"
                                   f"{self.log_tail()}")
        self._proc = None
        _live_clusters.discard(self)

    def restart(self) -> None:
        """stop() then start(): same data, same port."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster and all its processes at once (like a lost
        machine: no shutdown checkpoint, the next start() runs WAL recovery). Returns when they
        are gone. Nothing when it is not running."""
        pid = self.pid
        if pid is None:
            return
        os.kill(pid, signal.SIGSTOP)  # it forks no new child while we collect them
        kids = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for kid in kids:
            try:
                os.kill(kid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._wait_gone(pid, 10)
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres processes outlived SIGKILL: {kids}")
            time.sleep(0.01)
        self._proc = None
        _live_clusters.discard(self)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait until the postmaster `pid` has exited; reap it when it is our child."""
        proc = self._proc
        if proc is not None and proc.pid == pid:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        # Not our child (another PgCluster object or process started it): if nobody reaps it
        # (a container whose init does not), it stays a zombie, which postgres would take for
        # a live server that still holds its lock files. It is dead: drop them.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        for lock in [self.data_dir / "postmaster.pid", *self.socket_dir.glob(".s.PGSQL.*.lock")]:
            try:
                if lock.read_text().split("\n", 1)[0].strip() == str(pid):
                    lock.unlink()
            except (OSError, ValueError):
                pass
        return True

    def close(self) -> None:
        """stop(); and remove the folder when temporary() made it."""
        try:
            self.stop()
        except Exception:
            self.kill()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
            _temporary_clusters.discard(self)

    def __enter__(self) -> "PgCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- clients

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql as the superuser; its unaligned, tuples-only output. Raises on error."""
        if self.port is None:
            raise RuntimeError("the cluster is not started")
        result = subprocess.run(
            [self._psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql],
            env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}) on {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; its URL."""
        self.psql(f"CREATE DATABASE {_ident(name)}")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS name, closing its connections first."""
        self.psql(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")

    # ------------------------------------------------------------ internals

    def _env(self) -> dict[str, str]:
        # PGHOST, PGPORT, PGDATA, PGOPTIONS... of the caller's environment must not steer ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _server_env(self) -> dict[str, str]:
        env = self._env()
        if self._server_user is not None:
            u = self._server_user
            env.update(HOME=u.pw_dir, USER=u.pw_name, LOGNAME=u.pw_name)
        return env

    def _run_as_server(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run a server program: as the postgres user when we are root, else as ourselves."""
        kwargs = {}
        if self._server_user is not None:
            u = self._server_user
            kwargs = dict(user=u.pw_uid, group=u.pw_gid, extra_groups=[])
        return subprocess.run(cmd, cwd=self.root, env=self._server_env(),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, **kwargs)

    def _prepare_folders(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o700)
        self.log_path.touch()
        if self._server_user is not None:
            u = self._server_user
            for path in (self.data_dir, self.socket_dir, self.log_path):
                os.chown(path, u.pw_uid, u.pw_gid)
            if not _reachable_by(u, self.root):
                raise RuntimeError(
                    f"the {u.pw_name!r} user cannot reach {self.root} (a folder above it is not "
                    f"searchable by it, e.g. pytest's mode-700 tmp dirs); put the cluster under "
                    f"make_root() or use PgCluster.temporary()")
        sock_file = self.socket_dir / ".s.PGSQL.65535"
        if len(str(sock_file)) > _SOCKET_PATH_MAX:
            raise RuntimeError(f"{self.socket_dir} is too long a path for a Unix socket; "
                               f"use a shorter root, e.g. make_root()")

    def _initdb(self) -> None:
        self._prepare_folders()
        result = self._run_as_server(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-A", "trust",
             "-U", SUPERUSER, "--encoding", "UTF8", "--no-locale", "--no-sync",
             "--no-instructions"],
            timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")

    def _configured_port(self) -> int | None:
        try:
            conf = (self.data_dir / "postgresql.conf").read_text()
        except OSError:
            return None
        if _CONF_MARK not in conf:
            return None
        match = re.search(r"^port = (\d+)$", conf.split(_CONF_MARK, 1)[1], re.M)
        return int(match.group(1)) if match else None

    def _write_conf(self) -> None:
        """Our settings at the end of postgresql.conf (later lines win), rewritten at each start:
        they stay with the data, so a later start (even by a new PgCluster on the same root)
        listens on the same port."""
        conf_path = self.data_dir / "postgresql.conf"
        conf = conf_path.read_text().split(_CONF_MARK, 1)[0]
        lines = [
            _CONF_MARK,
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.socket_dir}'",
        ]
        for key, value in self.settings.items():
            if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_.]+", value):
                value = "'" + value.replace("'", "''") + "'"
            lines.append(f"{key} = {value}")
        conf += "\n".join(lines) + "\n"
        conf_path.write_text(conf)  # rewrites in place: the owner stays the postgres user

    def _start_server(self) -> None:
        """Start `postgres` as our child (so we reap it), its output appended to server.log, and
        wait until it accepts connections on its port."""
        kwargs = {}
        if self._server_user is not None:
            u = self._server_user
            kwargs = dict(user=u.pw_uid, group=u.pw_gid, extra_groups=[])
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                cwd=self.root, env=self._server_env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            # Like pg_ctl: first wait for postmaster.pid to say "ready" (asking earlier only
            # fills the log with "not yet accepting connections"), then ask on the port.
            if self._pidfile_ready() and self._accepts_connections():
                return
            code = self._proc.poll()
            if code is not None or time.monotonic() > deadline:
                if code is None:
                    self.stop("immediate")
                self._proc = None
                why = (f"exited with code {code}" if code is not None else
                       f"did not accept connections within {self.startup_timeout:.0f} s")
                raise RuntimeError(f"PostgreSQL on 127.0.0.1:{self.port} {why}\n"
                                   f"--- server log ---\n{self.log_tail()}")
            time.sleep(0.02)

    def _pidfile_ready(self) -> bool:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (len(lines) > 7 and self._proc is not None
                and lines[0].strip() == str(self._proc.pid) and lines[7].strip() == "ready")

    def _accepts_connections(self) -> bool:
        return subprocess.run(
            [self._pg_isready, "-q", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", SUPERUSER, "-d", "postgres", "-t", "2"],
            env=self._env(), stdin=subprocess.DEVNULL, capture_output=True).returncode == 0


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}", name):
        raise ValueError(f"not a database name this harness accepts: {name!r}")
    return '"' + name + '"'
