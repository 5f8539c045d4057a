"""The embedded PostgreSQL of `make run` and `make test` (portal/embedded_db.py), started for
real from the pgserver wheel, in a data directory of the test's own: its URL is known before
anything runs and Django reads it back, start is idempotent and survives a kill -9 and a stale
pid file, stop stops, and the command line answers as pg_ctl does."""

import os
import signal
import subprocess
import time
from pathlib import Path

import dj_database_url
import psycopg
import pytest
from helpers import database_url

from portal import embedded_db


def checkout_at(monkeypatch, dot_data: Path) -> None:
    """Point the module at `dot_data` instead of the checkout's .data/."""
    paths = {
        "_DOT_DATA": dot_data,
        "DATA_DIR": dot_data / "pg",
        "LOG_FILE": dot_data / "pg" / "server.log",
        "_LOCK_FILE": dot_data / "pg.lock",
        "_XDG_DIR": dot_data / "pg-xdg",
    }
    for name, value in paths.items():
        monkeypatch.setattr(embedded_db, name, value)


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory):
    """A data directory of this module's own; whatever runs there is stopped at the end."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        checkout_at(monkeypatch, tmp_path_factory.mktemp("checkout") / ".data")
        yield embedded_db
        embedded_db.stop()


@pytest.fixture
def embedded(server_dir, monkeypatch):
    # PG* variables of the caller must not reach the server's tools: a read-only default would
    # make the first start's CREATE DATABASE fail, a port or database would send psql elsewhere
    monkeypatch.setenv("PGOPTIONS", "-c default_transaction_read_only=on")
    monkeypatch.setenv("PGPORT", "1")
    monkeypatch.setenv("PGDATABASE", "nowhere")
    return server_dir


def connect(url: str) -> psycopg.Connection:
    settings = dj_database_url.parse(url)
    return psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["OPTIONS"]["host"],
        port=settings["OPTIONS"]["port"],
    )


def postmaster_pid() -> int:
    return int((embedded_db.DATA_DIR / "postmaster.pid").read_text().split()[0])


def test_the_url_names_the_socket_before_anything_starts_and_django_reads_it_back(tmp_path, monkeypatch):
    checkout_at(monkeypatch, tmp_path / "My Checkout" / ".data")  # a space and capitals
    url = embedded_db.url()
    assert not (tmp_path / "My Checkout").exists()  # computing it made nothing
    parsed = dj_database_url.parse(url)
    assert (parsed["NAME"], parsed["USER"], parsed["HOST"]) == ("fieldwatch", "postgres", "")
    assert parsed["OPTIONS"] == {"host": str(tmp_path / "My Checkout" / ".data" / "pg-run"), "port": 5432}
    # the tests hand the same database to the processes they start
    assert dj_database_url.parse(database_url(parsed)) == parsed


def test_a_checkout_too_deep_for_a_unix_socket_path_gets_a_socket_dir_in_tmp(tmp_path, monkeypatch):
    checkout_at(monkeypatch, tmp_path / ("deep" * 30) / ".data")
    first = embedded_db.socket_dir()
    assert first.parent == Path("/tmp") and first.name.startswith("fieldwatch-pg-")
    assert len(os.fsencode(first / ".s.PGSQL.5432")) < 104
    assert embedded_db.socket_dir() == first  # a pure function of the paths
    checkout_at(monkeypatch, tmp_path / ("other" * 30) / ".data")
    assert embedded_db.socket_dir() != first  # each checkout its own


def test_start_serves_the_database_once_and_stop_stops_it(embedded, capsys):
    assert not embedded.status()
    assert embedded.main(["status"]) == 3 and capsys.readouterr().out == "stopped\n"
    url = embedded.start()
    assert url == embedded.url() and embedded.status()
    with connect(url) as connection:
        row = connection.execute(
            "SELECT current_database(), current_user, pg_encoding_to_char(encoding), datcollate"
            " FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row[:3] == ("fieldwatch", "postgres", "UTF8") and row[3] in {"C.UTF-8", "C"}
    pid = postmaster_pid()
    assert embedded.start() == url and postmaster_pid() == pid  # already running: left alone
    assert embedded.main(["status"]) == 0 and capsys.readouterr().out == f"running (pid {pid}): {url}\n"
    assert embedded.main(["url"]) == 0 and capsys.readouterr().out == f"{url}\n"
    assert embedded.main(["stop"]) == 0 and not embedded.status()
    embedded.stop()  # stopping a stopped server is nothing
    assert embedded.main(["stop"]) == 0


def test_start_comes_back_after_a_kill_and_over_a_stale_pid_file(embedded):
    embedded.start()
    os.kill(postmaster_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while embedded.status():
        assert time.monotonic() < deadline, "the killed postmaster still accepts connections"
        time.sleep(0.05)
    with connect(embedded.start()) as connection:  # over the crash leftovers
        assert connection.execute("SELECT 1").fetchone() == (1,)
    embedded.stop()
    # a pid file whose PID now belongs to an unrelated process of the server's user (a container
    # restart reuses PIDs): postgres itself would refuse to start, taking it for a postmaster
    uid, gid = embedded._data_owner()
    unrelated = subprocess.Popen(["sleep", "120"], **embedded._as_user(uid, gid))
    try:
        (embedded.DATA_DIR / "postmaster.pid").write_text(f"{unrelated.pid}\n{embedded.DATA_DIR}\n")
        with connect(embedded.start()) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        assert postmaster_pid() != unrelated.pid
    finally:
        unrelated.kill()
        unrelated.wait()


def test_the_command_line_says_how_to_use_it(capsys):
    assert embedded_db.main([]) == 2 and embedded_db.main(["restart"]) == 2
    assert "usage: python -m portal.embedded_db start|stop|status|url" in capsys.readouterr().err


def test_a_broken_install_is_a_message_and_exit_1_not_a_traceback(tmp_path, monkeypatch, capsys):
    checkout_at(monkeypatch, tmp_path / ".data")
    monkeypatch.setattr(embedded_db, "_bindir", lambda: tmp_path / "no-such-bin")
    assert embedded_db.main(["start"]) == 1
    assert capsys.readouterr().err == (
        f"embedded_db start: initdb: cannot run {tmp_path}/no-such-bin/initdb: No such file or directory\n"
    )
