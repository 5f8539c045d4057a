"""Embedded PostgreSQL 16 (the binaries shipped in the ``pgserver`` wheel) for local use.

Used when DATABASE_URL is unset. Standalone on purpose: nothing from Django or the project is
imported, and ``pgserver`` is imported only inside :func:`start`, so settings can call
:func:`url` at import time for the cost of a few string operations.

    python -m portal.embedded_db start|stop|status|url

Layout (all under ``<checkout>/.data/``, which ignores itself via ``.data/.gitignore``)::

    pg/          PGDATA (owned by the ``pgserver`` system user when run as root); log in pg/server.log
    pg-run/      unix socket directory (only if short enough, see socket_dir())
    pg-xdg/      private XDG_RUNTIME_DIR used while importing pgserver
    pg.lock      serialises start/stop between processes

Notes on pgserver (0.1.4) and why this module drives pg_ctl itself instead of calling
``pgserver.get_server()``:

* get_server() listens on a unix socket only, in PGDATA or, when that path is too long for
  AF_UNIX, in ``$XDG_RUNTIME_DIR/python_PostgresServer/<hash of path + inode>``. The inode makes
  that path unknowable before the first start, but url() must be computable without starting
  anything. So we pick the socket directory ourselves, from the paths alone, and pass it to
  postgres with ``-k``.
* get_server() registers an atexit hook that stops the server when the last Python process
  holding it exits (unless cleanup_mode=None). We never create a PostgresServer, so there is no
  such hook: ``pg_ctl start`` detaches the postmaster (setsid) and it runs until stop().
  Do not call pgserver.get_server() on DATA_DIR elsewhere with the default cleanup_mode: it
  would stop this server when that process exits.
* As root, postgres refuses to run, so pgserver creates a ``pgserver`` system user (useradd)
  and runs initdb/pg_ctl as that user. We do the same (same user name, so a data dir is
  interchangeable with pgserver's), and also drop root's group, make sure that user can
  traverse to the data dir and read the binaries, and chown the data dir if its owner changed.
* Importing pgserver computes platformdirs.user_runtime_path() at class-definition time; with
  XDG_RUNTIME_DIR unset that warns (RuntimeDirWarning) or can raise if /tmp/runtime-<uid> is
  unusable. We point XDG_RUNTIME_DIR at a private 0700 dir under .data/ during that import.
* Crash leftovers are handled: a postmaster.pid whose PID was reused by an unrelated process is
  removed (checked via /proc comm + cwd), and right after a kill -9 the start is retried while
  the old postmaster is still an unreaped zombie ("lock file ... already exists").
* The wheel ships no contrib extensions (only plpgsql and pgvector's ``vector``): no pg_trgm,
  citext, hstore, pgcrypto, uuid-ossp, btree_gist, unaccent. gen_random_uuid() is core.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

__all__ = ["DATA_DIR", "DB_NAME", "DB_USER", "PORT", "socket_dir", "url", "start", "stop", "status"]

CHECKOUT = Path(__file__).resolve().parent.parent
_DOT_DATA = CHECKOUT / ".data"
DATA_DIR = _DOT_DATA / "pg"
DB_NAME = "fieldwatch"
DB_USER = "postgres"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): the server listens on no TCP port
SYSTEM_USER = "pgserver"  # the user pgserver itself creates when run as root
LOG_FILE = DATA_DIR / "server.log"
_LOCK_FILE = _DOT_DATA / "pg.lock"
_XDG_DIR = _DOT_DATA / "pg-xdg"
_SOCKET_NAME = f".s.PGSQL.{PORT}"
# sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS/BSD, including the trailing NUL.
_MAX_SOCKET_PATH = 103
_TIMEOUT = 60  # seconds for pg_ctl start/stop


class EmbeddedDatabaseError(RuntimeError):
    pass


# --------------------------------------------------------------------------- paths and URL


def socket_dir() -> Path:
    """Directory of the server's unix socket; a pure function of the checkout path.

    ``.data/pg-run`` when the socket path fits in sun_path, else ``/tmp/fieldwatch-pg-<hash>``
    (the postmaster touches its socket regularly, so tmp cleaners leave it alone).
    """
    local = _DOT_DATA / "pg-run"
    if len(os.fsencode(local / _SOCKET_NAME)) <= _MAX_SOCKET_PATH:
        return local
    digest = hashlib.sha256(os.fsencode(DATA_DIR)).hexdigest()[:16]
    return Path("/tmp") / f"fieldwatch-pg-{digest}"  # noqa: S108 (a socket dir named per data dir, 0700)


def _url(database: str) -> str:
    # host/port as query parameters: dj-database-url lower-cases a percent-encoded host in the
    # netloc (it goes through urlsplit().hostname), which would corrupt paths with capitals.
    # The explicit port keeps a PGPORT in the client's environment from redirecting libpq.
    host = quote(str(socket_dir()), safe="/")
    return f"postgresql://{DB_USER}@/{database}?host={host}&port={PORT}"


def url() -> str:
    """The database URL; computed from the paths only, starts nothing."""
    return _url(DB_NAME)


# --------------------------------------------------------------------------- state


def _accepting() -> bool:
    """True if a postmaster accepts connections on our socket (an empty connect logs nothing)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect(os.fsencode(socket_dir() / _SOCKET_NAME))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _pidfile() -> list[str] | None:
    try:
        return (DATA_DIR / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pidfile_state() -> tuple[str, int | None]:
    """Classify DATA_DIR/postmaster.pid.

    "none": no pid file; "ours": a live postmaster for DATA_DIR (on whatever socket);
    "dead": its process is gone or a zombie not yet reaped (postgres copes, maybe after a wait);
    "foreign": the PID now belongs to an unrelated process (PID reuse after a container restart).
    """
    lines = _pidfile()
    if not lines or not lines[0].strip().isdigit():
        return "none", None
    pid = int(lines[0])
    if not _pid_alive(pid):
        return "dead", pid
    proc = Path("/proc") / str(pid)
    if not proc.is_dir():  # no procfs (macOS): cannot tell, assume it is ours
        return "ours", pid
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
            return "dead", pid
        if (proc / "comm").read_text().strip() != "postgres":
            return "foreign", pid
        cwd = os.readlink(proc / "cwd")  # the postmaster chdir()s into its data directory
    except PermissionError:
        return "ours", pid  # cannot tell; never risk two postmasters on one data dir
    except OSError:
        return "dead", pid  # exited meanwhile
    return ("ours" if cwd == os.path.realpath(DATA_DIR) else "foreign"), pid


def _our_postmaster_pid() -> int | None:
    state, pid = _pidfile_state()
    return pid if state == "ours" else None


def status() -> bool:
    """Is the embedded server running and accepting connections on socket_dir()?"""
    return _accepting()


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    import fcntl

    _DOT_DATA.mkdir(parents=True, exist_ok=True)
    ignore = _DOT_DATA / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    with open(_LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _bindir() -> Path:
    """pgserver's bundled binaries, located without importing (and initialising) pgserver."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError("pgserver is not installed (pip install pgserver); or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _env() -> dict[str, str]:
    # PG* variables (PGPORT, PGHOST, PGDATA, PGOPTIONS, ...) would change what postgres, pg_ctl
    # and psql do; everything needed is passed explicitly.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _as_user(uid: int | None, gid: int | None) -> dict:
    if uid is None:
        return {}
    return {"user": uid, "group": gid, "extra_groups": []}


def _run(args: list, *, what: str, input: str | None = None, run_as: dict | None = None) -> str:
    # Output goes to a temp file, not a pipe: pg_ctl start forks the postmaster, and a pipe
    # inherited by it could keep communicate() waiting (pgserver notes the same hang).
    with tempfile.TemporaryFile("w+") as out:
        try:
            result = subprocess.run(  # noqa: S603 (our own pg binaries, arguments built here)
                [str(a) for a in args],
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env=_env(),
                cwd="/",
                timeout=_TIMEOUT + 30,
                **(run_as or {}),
            )
        except subprocess.TimeoutExpired as exc:
            out.seek(0)
            raise EmbeddedDatabaseError(f"{what}: timed out\n{out.read()}{_log_tail()}") from exc
        except OSError as exc:  # a binary missing or not executable (a broken pgserver install)
            raise EmbeddedDatabaseError(f"{what}: cannot run {args[0]}: {exc.strerror}") from exc
        out.seek(0)
        output = out.read()
    if result.returncode != 0:
        raise EmbeddedDatabaseError(f"{what} failed (exit {result.returncode}):\n{output}{_log_tail()}")
    return output


def _log_tail(lines: int = 20) -> str:
    try:
        text = LOG_FILE.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {LOG_FILE} ---\n" + "\n".join(text)


@contextlib.contextmanager
def _private_xdg_runtime_dir() -> Iterator[None]:
    """Give pgserver's import-time platformdirs.user_runtime_path() a valid, short, private dir."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current:
        try:
            st = os.lstat(current)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700:
                yield
                return
        except OSError:
            pass
    _XDG_DIR.mkdir(mode=0o700, exist_ok=True)
    os.chmod(_XDG_DIR, 0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(_XDG_DIR)
    try:
        yield
    finally:
        if current is None:
            os.environ.pop("XDG_RUNTIME_DIR", None)
        else:
            os.environ["XDG_RUNTIME_DIR"] = current


def _ensure_traversable(path: Path, uid: int, gid: int) -> None:
    """Add o+x (only where missing) to the ancestors of path so uid:gid can reach it."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == uid:
            needed = stat.S_IXUSR
        elif st.st_gid == gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXGRP | stat.S_IXOTH)  # noqa: S103 (search only)


def _ensure_world_readable(root: Path) -> None:
    """o+r on files, o+rx on dirs and executables below root, changing only what lacks it."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in [None, *filenames]:
            target = dirpath if name is None else os.path.join(dirpath, name)
            st = os.lstat(target)
            if stat.S_ISLNK(st.st_mode):
                continue
            wanted = stat.S_IROTH | stat.S_IRGRP
            if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
                wanted |= stat.S_IXOTH | stat.S_IXGRP
            if st.st_mode & wanted != wanted:
                os.chmod(target, stat.S_IMODE(st.st_mode) | wanted)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _make_socket_dir(path: Path, uid: int | None, gid: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    owners = {os.geteuid()} | ({uid} if uid is not None else set())
    if not stat.S_ISDIR(st.st_mode) or st.st_uid not in owners:
        # matters for the /tmp fallback, where anyone could have pre-created the name
        raise EmbeddedDatabaseError(f"{path} is not a directory owned by us; remove it and retry")
    if uid is not None and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
    # trust auth: only the server user (and root) may reach the socket
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _server_user() -> tuple[int | None, int | None]:
    """(uid, gid) to run initdb/postgres as: None when not root; the pgserver user when root."""
    if os.geteuid() != 0:
        return None, None
    import pwd

    with _private_xdg_runtime_dir():
        from pgserver.utils import (
            ensure_user_exists,  # lazily: pgserver is only needed here
        )

    entry = ensure_user_exists(SYSTEM_USER)  # useradd -s /bin/bash pgserver, as pgserver does
    if entry is None:
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _data_owner() -> tuple[int | None, int | None]:
    """(uid, gid) that pg_ctl must run as to control an existing DATA_DIR."""
    if os.geteuid() != 0:
        return None, None
    st = DATA_DIR.stat()
    if st.st_uid != 0:
        return st.st_uid, st.st_gid
    import pwd

    entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


# --------------------------------------------------------------------------- start / stop


def _initdb(bindir: Path, run_as: dict) -> None:
    errors = []
    # C.UTF-8: byte-order collation (same result on every machine) with UTF-8 ctype so
    # upper()/lower()/ILIKE work beyond ASCII. Plain C where that locale is not installed.
    for locale in ("C.UTF-8", "C"):
        try:
            _run(
                [
                    bindir / "initdb",
                    "-D",
                    DATA_DIR,
                    "-U",
                    DB_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    f"--locale={locale}",
                    "--no-instructions",
                ],
                what="initdb",
                run_as=run_as,
            )
            return
        except EmbeddedDatabaseError as exc:
            errors.append(str(exc))
            if "invalid locale" not in str(exc).lower():
                break
    raise EmbeddedDatabaseError("\n".join(errors))


def _pg_ctl_stop(bindir: Path, run_as: dict) -> None:
    try:
        _run(
            [bindir / "pg_ctl", "-D", DATA_DIR, "-w", "-t", _TIMEOUT, "-m", "fast", "stop"],
            what="pg_ctl stop",
            run_as=run_as,
        )
    except EmbeddedDatabaseError:
        if _our_postmaster_pid() is not None:
            raise


def _boot() -> None:
    bindir = _bindir()
    uid, gid = _server_user()
    run_as = _as_user(uid, gid)
    sock = socket_dir()

    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_socket_dir(sock, uid, gid)
    if uid is not None:
        if DATA_DIR.stat().st_uid != uid:  # fresh dir, or the pgserver user was recreated
            _chown_tree(DATA_DIR, uid, gid)
        _ensure_traversable(DATA_DIR, uid, gid)
        _ensure_traversable(sock, uid, gid)
        package = bindir.parent.parent  # site-packages/pgserver
        _ensure_traversable(package, uid, gid)
        for tree in ("bin", "lib", "share"):
            _ensure_world_readable(package / "pginstall" / tree)
        libs = package.parent / "pgserver.libs"  # libpq for initdb/psql
        if libs.is_dir():
            _ensure_world_readable(libs)

    if not (DATA_DIR / "PG_VERSION").exists():
        _initdb(bindir, run_as)

    state, _ = _pidfile_state()
    if state == "ours":
        # A postmaster for DATA_DIR that is not on our socket (started by hand, by pgserver's
        # get_server, or before the checkout moved): stop it so it comes back on socket_dir().
        _pg_ctl_stop(bindir, run_as)
    elif state == "foreign":
        # Stale postmaster.pid whose PID now belongs to another process (typical after a
        # container restart): postgres would refuse to start, thinking it still runs.
        with contextlib.suppress(FileNotFoundError):
            (DATA_DIR / "postmaster.pid").unlink()

    options = f"-h '' -p {PORT} -k {shlex.quote(str(sock))}"  # pg_ctl hands -o to /bin/sh
    command = [bindir / "pg_ctl", "-D", DATA_DIR, "-l", LOG_FILE, "-w", "-t", _TIMEOUT, "-o", options, "start"]
    deadline = time.monotonic() + 15
    while True:
        log_size = LOG_FILE.stat().st_size if LOG_FILE.exists() else 0
        try:
            _run(command, what="pg_ctl start", run_as=run_as)
            return
        except EmbeddedDatabaseError:
            # Right after a crash or kill -9 the old postmaster may linger as a zombie until
            # init reaps it, and its children need a moment to notice: postgres then refuses
            # with "lock file ... already exists" / "shared memory block ... still in use".
            try:
                with open(LOG_FILE, errors="replace") as log:
                    log.seek(log_size)
                    new_log = log.read()
            except OSError:
                new_log = ""
            transient = "already exists" in new_log or "still in use" in new_log
            if not transient or time.monotonic() > deadline or _our_postmaster_pid() is not None:
                raise
            time.sleep(0.25)


def _ensure_database() -> None:
    sql = (
        f"SELECT 'CREATE DATABASE {DB_NAME}' "
        f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DB_NAME}')\\gexec\n"
    )
    psql = [_bindir() / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", _url("postgres")]
    deadline = time.monotonic() + _TIMEOUT
    while True:
        try:
            _run(psql, what="creating database", input=sql)
            return
        except EmbeddedDatabaseError as exc:
            # someone else's start still in progress / recovery after a crash
            if "starting up" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start() -> str:
    """Start the server unless it already runs, make sure database DB_NAME exists; return url().

    The server outlives the calling process; stop it with stop().
    """
    with _locked():
        if not _accepting():
            _boot()
        _ensure_database()
    return url()


def stop() -> None:
    """Stop the server (pg_ctl stop -m fast, as the data dir's owner); no-op if not running."""
    if not (DATA_DIR / "PG_VERSION").exists():
        return
    with _locked():
        if _our_postmaster_pid() is None:
            return
        uid, gid = _data_owner()
        _pg_ctl_stop(_bindir(), _as_user(uid, gid))


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in {"start", "stop", "status", "url"}:
        print("usage: python -m portal.embedded_db start|stop|status|url", file=sys.stderr)
        return 2
    command = args[0]
    try:
        if command == "start":
            print(start())
        elif command == "stop":
            stop()
        elif command == "url":
            print(url())
        else:
            if status():
                pid = _our_postmaster_pid()
                print(f"running (pid {pid}): {url()}" if pid else f"running: {url()}")
                return 0
            print("stopped")
            return 3  # like pg_ctl status
    except EmbeddedDatabaseError as exc:
        print(f"embedded_db {command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
