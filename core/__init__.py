"""vidda core: the pure domain and the event engine.

`core` never imports `sync_server`, `tui_client`, `textual` or `websockets`
(tests/test_layering.py proves it). `core.store` is the one place that touches
disk (aiosqlite); everything else is pure.
"""

__version__ = "0.1.0"
