"""feedgen.ingest.records: record validation never fails with anything but `RecordError`, whatever a record holds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedgen.ingest.records import POST, RecordError, parse_post, parse_subject_record
from tests import frames
from tests.hostile import COLLECTIONS, records


@pytest.mark.parametrize('collection', COLLECTIONS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_validation_raises_only_record_error(collection: str, data: st.DataObject) -> None:
    record = data.draw(records(collection))
    try:
        parsed = parse_post(record) if collection == POST else parse_subject_record(collection, record)
    except RecordError as error:
        assert error.reason
        return
    assert parsed is not None


@pytest.mark.parametrize(
    ('fields', 'reason'),
    [
        ({'facets': 5}, 'invalid_facet'),
        ({'facets': True}, 'invalid_facet'),
        ({'facets': [{'features': 7}]}, 'invalid_facet'),
        ({'tags': 'abc'}, 'invalid_tags'),
        ({'langs': {'en': 1}}, 'invalid_langs'),
    ],
)
def test_arrays_of_the_wrong_type_are_refused(fields: dict, reason: str) -> None:
    with pytest.raises(RecordError) as raised:
        parse_post(frames.post_record(**fields))
    assert raised.value.reason == reason


def test_an_embed_type_that_is_not_a_string_is_no_embed() -> None:
    assert parse_post(frames.post_record(embed={'$type': ['app.bsky.embed.images']})).embed is None
