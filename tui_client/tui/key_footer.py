"""The footer of keys, rebuilt only when the keys it shows change.

Textual's `Footer` recomposes itself (a widget per key, each styled and
laid out) whenever the screen says its bindings were updated: on every
focus change, on every return from a dialog, after every `refresh_bindings`.
On the plan screen that is ~25 widgets and tens of milliseconds per edit,
for a footer that nearly always shows the same keys. `KeyFooter` remembers
what it last composed and skips the rebuild when nothing shown differs.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer


def shown_keys(screen: Screen[Any]) -> tuple[tuple[Any, ...], ...]:
    """Everything the footer draws from the screen's active bindings."""
    return tuple(
        (key, b.key, b.action, b.description, b.show, b.group, enabled, tooltip)
        for key, (_node, b, enabled, tooltip) in screen.active_bindings.items()
    )


class KeyFooter(Footer):
    _composed: tuple[tuple[Any, ...], ...] | None = None

    def compose(self) -> ComposeResult:
        self._composed = shown_keys(self.screen) if self._bindings_ready else None
        yield from super().compose()

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if (
            self._composed is not None
            and self.is_attached
            and screen is self.screen
            and shown_keys(screen) == self._composed
        ):
            return  # the same keys: the footer on screen is right
        super().bindings_changed(screen)
