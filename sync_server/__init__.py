"""The sync server: a thin websockets shell around `core.sync` (issue: sync)."""
