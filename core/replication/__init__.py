"""Sync bound to the store: the server's hub and the client's session.

`core.sync` is the sans-I/O protocol (messages, handshake state machines,
bundles: no event loop, no SQLite). This package runs that protocol against
an `EventLog`: what to send, what to ingest, what to record. The websockets
shells (`sync_server`, `tui_client.sync_engine`) only move frames.
"""
