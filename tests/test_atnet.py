"""tests/atnet.py: without the local network the end-to-end tests skip, except in CI, where they fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.atnet import find_network, free_port


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv('FEEDGEN_ATNET', raising=False)
    monkeypatch.delenv('CI', raising=False)
    return monkeypatch


def test_without_the_network_the_tests_skip_saying_why(no_network: pytest.MonkeyPatch) -> None:
    with pytest.raises(pytest.skip.Exception, match='FEEDGEN_ATNET is unset'):
        find_network()


def test_in_ci_a_missing_network_fails(no_network: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_network.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='FEEDGEN_ATNET is unset'):
        find_network()
    no_network.setenv('FEEDGEN_ATNET', str(tmp_path / 'missing.json'))
    with pytest.raises(pytest.fail.Exception, match='cannot read FEEDGEN_ATNET'):
        find_network()


def test_in_ci_a_network_that_does_not_answer_fails(no_network: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dead = f'http://127.0.0.1:{free_port()}'
    state = tmp_path / 'network.json'
    state.write_text(json.dumps({'plc': dead, 'pds': dead, 'appview': dead}))
    no_network.setenv('FEEDGEN_ATNET', str(state))
    no_network.setenv('CI', '1')
    with pytest.raises(pytest.fail.Exception, match='does not answer'):
        find_network()
    state.write_text(json.dumps({'plc': dead, 'pds': dead}))
    with pytest.raises(pytest.fail.Exception, match='start atnet with --appview'):
        find_network()
