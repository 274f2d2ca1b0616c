"""Turns: a serving process's requests run one at a time, in the order they came, and a waiting one steps away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from feedgen.serve.turns import Turns
from tests.atnet import eventually


def in_threads(count: int, body: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=body, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_requests_run_one_at_a_time() -> None:
    turns = Turns()
    inside: list[int] = []
    overlaps = 0
    done: list[int] = []

    def request(index: int) -> None:
        nonlocal overlaps
        for _ in range(20):
            with turns.turn():
                inside.append(index)
                overlaps += len(inside) > 1
                time.sleep(0.0005)  # gives up the interpreter lock: another thread would get in here
                inside.remove(index)
        done.append(index)

    in_threads(8, request)
    assert overlaps == 0
    assert sorted(done) == list(range(8))


def test_a_request_that_waits_lets_the_next_one_run() -> None:
    turns = Turns()
    answered = threading.Event()
    release = threading.Event()
    events: list[str] = []

    def waiting() -> None:
        with turns.turn():
            events.append('waiting starts')
            with turns.away():
                release.wait(timeout=30)
            events.append('waiting ends')

    def started() -> None:
        assert events == ['waiting starts']

    def quick() -> None:
        eventually(started, timeout=30)
        with turns.turn():
            events.append('quick')
        answered.set()

    threads = [threading.Thread(target=waiting), threading.Thread(target=quick)]
    for thread in threads:
        thread.start()
    assert answered.wait(timeout=30)  # answered while the first request still waits
    release.set()
    for thread in threads:
        thread.join(timeout=30)
    assert events == ['waiting starts', 'quick', 'waiting ends']


def test_a_failed_request_gives_its_turn_back() -> None:
    turns = Turns()

    def failing(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        raise RuntimeError('boom')

    app = turns.wrap(failing)
    with pytest.raises(RuntimeError):
        app({}, lambda *args: None)
    with turns.turn():  # would wait forever if the failed request kept its turn
        pass
