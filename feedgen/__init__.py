"""feedgen: a Bluesky feed generator whose algorithms are open, published and explainable."""
