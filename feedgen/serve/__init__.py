"""Serve: the Flask app a Bluesky AppView calls (feed skeletons, the DID document, service auth), the receipts
and transparency pages that say how each page was made, metrics, and the HTTP server.

Depends on ranking and the store; nothing in feedgen but the command line depends on it.
"""
