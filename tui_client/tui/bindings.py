"""Key descriptions in the language of the moment.

Bindings are declared with an i18n key as their description; `localise`
rewrites the descriptions of a node's bindings (app or screen) whenever the
language changes. The i18n keys are remembered on the node the first time,
so later calls translate from the key, not from the last language.
"""

from __future__ import annotations

import dataclasses

from textual.dom import DOMNode

from tui_client.tui.i18n import Translator

_PALETTE = ("command_palette", "app.command_palette")


def localise(node: DOMNode, t: Translator) -> bool:
    """Translate the node's key descriptions; False if they already were in
    this language (nothing to redraw)."""
    if getattr(node, "_vidda_lang", None) == t.lang:
        return False
    node._vidda_lang = t.lang  # type: ignore[attr-defined]
    keys = node._bindings.key_to_bindings
    names: dict[tuple[str, str], str] = getattr(node, "_vidda_binding_keys", {})
    if not names:
        for key, bindings in keys.items():
            for b in bindings:
                names[(key, b.action)] = "palette" if b.action in _PALETTE else b.description
        node._vidda_binding_keys = names  # type: ignore[attr-defined]
    for key, bindings in keys.items():
        keys[key] = [
            dataclasses.replace(b, description=t(names[(key, b.action)]))
            if names.get((key, b.action))
            else b
            for b in bindings
        ]
    return True
