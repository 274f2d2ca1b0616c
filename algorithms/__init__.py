"""Built-in feed algorithms: each module holds one plugin (see docs/algorithms.md)."""
