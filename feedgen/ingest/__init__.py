"""Ingest: from a relay's bytes to indexed rows: the websocket connection, frames, events, records, the
pipeline and the indexer, the single writer of what the network says, and a first start's history backfill.

Depends on the store only.
"""
