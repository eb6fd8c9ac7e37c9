"""How values read in a table cell or a form field (user text is never changed)."""

from __future__ import annotations

from typing import Any

from core.commands.edits import EditError
from core.events.envelope import EventError
from core.events.ids import IdError
from core.events.schema import ENTITY_FIELDS, FieldError
from tui_client.home import HomeError

# What an edit may raise that a person should read (shown as a notification).
EDIT_ERRORS = (EditError, EventError, FieldError, IdError, HomeError, ValueError)


def cell_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "–"
    return str(value)


def form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def form_fields(kind: str) -> list[str]:
    return [f for f in ENTITY_FIELDS[kind] if f != "position"]
