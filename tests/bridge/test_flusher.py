"""The bridge's flush thread: one batch in flight, stored in the order handed over, a failed
store kept and retried (nothing after it overtakes it), and a forced shutdown that gives up.

The store function here records what it is given; the thread, its hand-over and its retries
are the real ones. The end-to-end guarantees (acks only after commit, SIGKILL, share groups)
are proved against a real Mosquitto and PostgreSQL in test_bridge.py."""

import threading

import pytest

from bridge.service import Flusher


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(Flusher, "RETRY_SECONDS", 0.01)


def test_batches_are_stored_one_at_a_time_in_the_order_handed_over():
    stored, release = [], threading.Event()

    def store(batch):
        release.wait(5)
        stored.append(batch)
        return True

    flusher = Flusher(store)
    flusher.start()
    assert flusher.submit(["a"], timeout=1)
    # the first batch is still committing: a second one is not taken until it is done
    assert not flusher.submit(["b"], timeout=0.05)
    assert not flusher.idle(0.05)
    release.set()
    assert flusher.submit(["b"], timeout=5)
    assert flusher.submit(["c"], timeout=5)
    assert flusher.idle(5)
    flusher.stop()
    assert stored == [["a"], ["b"], ["c"]]
    assert not flusher.thread.is_alive()


def test_a_failed_store_is_retried_before_anything_after_it(fast_retries):
    attempts = []

    def store(batch):
        attempts.append(batch)
        return not (batch == ["first"] and attempts.count(["first"]) < 3)  # the database is back on the 3rd try

    flusher = Flusher(store)
    flusher.start()
    assert flusher.submit(["first"], timeout=1)
    assert flusher.submit(["second"], timeout=5)
    assert flusher.idle(5)
    flusher.stop()
    assert attempts == [["first"], ["first"], ["first"], ["second"]]


def test_giving_up_ends_the_retries_of_a_batch_that_cannot_be_stored(fast_retries):
    attempts = []

    def store(batch):
        attempts.append(batch)
        return False

    flusher = Flusher(store)
    flusher.start()
    assert flusher.submit(["doomed"], timeout=1)
    assert not flusher.idle(0.05)  # still retrying
    flusher.giving_up = True
    assert flusher.idle(5)
    flusher.stop()
    assert len(attempts) >= 2 and set(map(tuple, attempts)) == {("doomed",)}


def test_a_bug_in_storing_stops_the_bridge_instead_of_stalling_it():
    def store(batch):
        raise ValueError("a bug")

    flusher = Flusher(store)
    flusher.start()
    assert flusher.submit(["x"], timeout=1)
    flusher.thread.join(5)
    assert not flusher.thread.is_alive()
    with pytest.raises(RuntimeError, match="flush thread failed"):
        flusher.check()
