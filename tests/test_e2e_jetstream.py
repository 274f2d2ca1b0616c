"""End to end with Jetstream as the source: the PDS's firehose goes through a Jetstream server to `feedgen run`.

The server is the stand-in of `tests/jetstreams.py`, fed live from the local PDS's firehose (Bluesky's own
Jetstream cannot be built here: tests/jetstream.sh says why). The tests are those of `tests/test_e2e_atnet.py`
(`latest`, `following` for two readers, likes, a delete disappearing), run against this module's generator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.atnet import Feedgen, Network, running_feedgen
from tests.jetstreams import StandInJetstream, bridge
from tests.test_e2e_atnet import (
    people,
    test_viewers_read_latest_and_their_own_following_hydrated_through_their_pds,
)

__all__ = ['people', 'test_viewers_read_latest_and_their_own_following_hydrated_through_their_pds']
pytestmark = pytest.mark.atnet


@pytest.fixture(scope='module')
def jetstream(network: Network) -> Iterator[StandInJetstream]:
    stop = threading.Event()
    with StandInJetstream() as server:
        thread = bridge(server, network.firehose + '/xrpc/com.atproto.sync.subscribeRepos', stop)
        yield server
        stop.set()
        thread.join(10)


@pytest.fixture(scope='module')
def feedgen(
    network: Network, people: dict, jetstream: StandInJetstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    folder = tmp_path_factory.mktemp('jetstream')
    yield from running_feedgen(network, people['publisher'], folder, jetstream=jetstream.url)


def test_the_generator_read_jetstream_compressed_from_the_first_event(
    feedgen: Feedgen, jetstream: StandInJetstream
) -> None:
    assert feedgen.settings.jetstream == jetstream.url
    assert jetstream.connections and all('zstdDictionary=' in path for path in jetstream.connections)
    assert 'cursor=0' in jetstream.connections[0]
