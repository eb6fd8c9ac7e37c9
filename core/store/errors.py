"""The store's error type (its own module so every store module can raise it)."""


class StoreError(Exception):
    """The log cannot do what was asked; the message says why."""
