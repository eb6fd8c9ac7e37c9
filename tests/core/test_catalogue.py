"""The catalogue is declared once and documented truly."""

from pathlib import Path

from core.events.bodies import BODY_TYPES, MEMBERSHIP_TYPES, type_tag
from core.events.schema import ENTITY_FIELDS, FIELD_SETTERS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_event_type_is_documented() -> None:
    text = DOCS.read_text("utf-8")
    missing = [type_tag(c) for c in BODY_TYPES + MEMBERSHIP_TYPES if f"`{type_tag(c)}`" not in text]
    assert missing == []


def test_event_names_are_past_tense_and_declare_their_fields() -> None:
    for cls in BODY_TYPES:
        assert type_tag(cls).endswith(("ed", "Set", "Written", "Given", "Withdrawn")), cls
        for _, field in cls._SETTABLE:
            assert field in ENTITY_FIELDS[cls.ENTITY], (cls, field)


def test_every_entity_field_has_an_editing_event() -> None:
    for kind, fields in ENTITY_FIELDS.items():
        for field in fields:
            if field.startswith("q_"):
                continue
            setters = FIELD_SETTERS[(kind, field)]
            assert any(not c.CREATES for c in setters), (kind, field)
