"""Ranking: the algorithm plugin API, finding plugins and turning them into feeds, and the read-only helpers
algorithms page with (keyset pagination, filters, score snapshots, personal rankings, reader feedback).

Depends on the store; never touches the network.
"""
