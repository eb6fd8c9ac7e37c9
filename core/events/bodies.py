"""The event catalogue: one frozen msgspec Struct per kind of plan change.

Every body names the entity it touches and *declares the fields it sets*
(`sets()`), so the projection merges per field. Creation events set every
field of the new entity (defaults included); revision events set only the
fields they carry (the rest are `UNSET` and are not encoded). Every edit of
an existing entity carries `replaces`: the event ids of the heads of the
fields it sets, as the author's replica saw them (see DESIGN.md, "Merging
without rebase").

Schema evolution (msgspec rules): new fields get defaults; unknown fields are
ignored on decode; old shapes are upcast on read (`core.events.upcast`).
Entity fields are derived from these classes in `core.events.schema`.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

from core.events.ids import DeviceKey, EventId, Uuid
from core.events.limits import (
    MAX_LIST,
    MAX_REPLACES,
    Count,
    IsoDate,
    Minutes,
    Position,
    Score,
    ShortText,
    Text,
    Year,
)

Replaces = Annotated[list[EventId], msgspec.Meta(max_length=MAX_REPLACES)]
Themes = Annotated[list[ShortText], msgspec.Meta(max_length=MAX_LIST)]

EntityKind = Literal[
    "plan", "sub_goal", "phase", "need", "activity", "actor", "involvement", "decision", "note"
]
KeyQuestion = Literal[
    "who_are_we", "knowledge_base", "where_to", "what_we_do", "resources", "actors"
]
KEY_QUESTIONS: tuple[str, ...] = (
    "who_are_we",
    "knowledge_base",
    "where_to",
    "what_we_do",
    "resources",
    "actors",
)
PlanKind = Literal["long", "short"]
PlanStatus = Literal["draft", "active", "paused", "completed", "archived"]
Assessment = Literal["achieved", "partly", "not_achieved"]
SubGoalStatus = Literal["open", "in_progress", "reached", "dropped"]
PhaseStatus = Literal["planned", "ongoing", "done", "skipped"]
NeedKind = Literal["knowledge", "process"]
NeedStatus = Literal["open", "in_progress", "met", "dropped"]
ActivityKind = Literal[
    "workshop",
    "political_workshop",
    "gjestebud",
    "survey",
    "public_meeting",
    "meeting",
    "interview",
    "study_trip",
    "seminar",
    "other",
]
Mode = Literal["physical", "digital", "hybrid"]
ActivityStatus = Literal["planned", "done", "postponed", "cancelled"]
ActorType = Literal["person", "organisation", "group"]
ActorCategory = Literal[
    "politicians",
    "administration",
    "residents",
    "youth",
    "elderly",
    "voluntary",
    "business",
    "county",
    "state",
    "research",
    "media",
    "other",
]
Participation = Literal["must", "should", "can"]
Stance = Literal["champion", "supportive", "neutral", "sceptical", "opposing"]
Strategy = Literal["inform", "consult", "involve", "collaborate", "empower"]
DecisionBody = Literal[
    "working_group", "project_group", "management", "executive_committee", "council", "other"
]
ResearchConsent = Literal["given", "withdrawn"]


ROLE_EDIT, ROLE_REMOVAL, ROLE_RESOLUTION, ROLE_UNKNOWN, ROLE_MEMBERSHIP = 0, 1, 2, 3, 4
_NO_IDS: list[bytes] = []


class Body(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Base of every event body. Subclasses set the class variables below."""

    ENTITY: ClassVar[str] = ""  # entity kind this event touches
    ID_FIELD: ClassVar[str | None] = None  # struct field with the entity id; None: the plan
    CREATES: ClassVar[bool] = False
    FIELD_MAP: ClassVar[dict[str, str]] = {}  # struct field -> entity field, when they differ
    NOT_FIELDS: ClassVar[frozenset[str]] = frozenset({"replaces"})
    ROLE: ClassVar[int] = 0  # ROLE_EDIT; tells the fold what to do without isinstance chains
    _SETTABLE: ClassVar[tuple[tuple[str, str], ...]] = ()
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    _VALUES: ClassVar[Callable[[Any], tuple[Any, ...]]] = staticmethod(lambda _: ())

    def entity_id(self, plan: bytes) -> bytes:
        return plan if self.ID_FIELD is None else bytes(getattr(self, self.ID_FIELD))

    def entity_kind(self) -> str:
        return self.ENTITY

    def sets(self) -> list[tuple[str, Any]]:
        """(entity field, value) pairs this event sets."""
        values = self._VALUES(self)  # type: ignore[call-arg]  # a staticmethod
        return [(f, v) for f, v in zip(self._FIELDS, values, strict=True) if v is not UNSET]

    def replaced(self) -> list[bytes]:
        """The ids this edit replaces (read-only: do not mutate)."""
        value: list[bytes] = getattr(self, "replaces", _NO_IDS)
        return value


# --- the plan itself, its societal goal, desired result and key questions -----------


class PlanCreated(Body, frozen=True):
    ENTITY = "plan"
    CREATES = True
    title: ShortText
    municipality: ShortText
    municipality_number: ShortText | None = None
    municipality_sami: ShortText | None = None
    county: ShortText | None = None
    themes: Themes = []
    kind: PlanKind = "long"
    status: PlanStatus = "active"
    period_start: IsoDate | None = None
    period_end: IsoDate | None = None


class PlanDetailsRevised(Body, frozen=True):
    ENTITY = "plan"
    title: ShortText | UnsetType = UNSET
    municipality: ShortText | UnsetType = UNSET
    municipality_number: ShortText | None | UnsetType = UNSET
    municipality_sami: ShortText | None | UnsetType = UNSET
    county: ShortText | None | UnsetType = UNSET
    themes: Themes | UnsetType = UNSET
    kind: PlanKind | UnsetType = UNSET
    status: PlanStatus | UnsetType = UNSET
    period_start: IsoDate | None | UnsetType = UNSET
    period_end: IsoDate | None | UnsetType = UNSET
    replaces: Replaces = []


class SocietalGoalSet(Body, frozen=True):
    ENTITY = "plan"
    FIELD_MAP = {"text": "societal_goal", "horizon_year": "societal_goal_horizon"}
    text: Text | UnsetType = UNSET
    horizon_year: Year | None | UnsetType = UNSET
    replaces: Replaces = []


class DesiredResultRevised(Body, frozen=True):
    """The desired result, written as something that *has happened*."""

    ENTITY = "plan"
    FIELD_MAP = {"text": "desired_result", "due": "desired_result_due"}
    text: Text | UnsetType = UNSET
    due: IsoDate | None | UnsetType = UNSET
    replaces: Replaces = []


class DesiredResultAssessed(Body, frozen=True):
    ENTITY = "plan"
    FIELD_MAP = {"assessment": "desired_result_assessment"}
    assessment: Assessment | None
    replaces: Replaces = []


class KeyQuestionAnswered(Body, frozen=True):
    """An answer to one of the six opening questions; the field is the question."""

    ENTITY = "plan"
    NOT_FIELDS = frozenset({"replaces", "question", "answer"})
    question: KeyQuestion
    answer: Text
    replaces: Replaces = []

    def sets(self) -> list[tuple[str, Any]]:
        return [(f"q_{self.question}", self.answer)]


class ResearchConsentGiven(Body, frozen=True):
    """The plan's municipality consents to research exports of the plan's
    events (see docs/research.md, "Consent"). `note`: on what terms, by whose
    decision (a case reference, say)."""

    ENTITY = "plan"
    FIELD_MAP = {"consent": "research_consent", "note": "research_consent_note"}
    consent: Literal["given"] = "given"
    note: Text | None = None
    replaces: Replaces = []


class ResearchConsentWithdrawn(Body, frozen=True):
    """Consent to research exports is withdrawn: from now on an export holds
    only aggregate counts of the plan."""

    ENTITY = "plan"
    FIELD_MAP = {"consent": "research_consent", "note": "research_consent_note"}
    consent: Literal["withdrawn"] = "withdrawn"
    note: Text | None = None
    replaces: Replaces = []


# --- sub-goals -------------------------------------------------------------------------


class SubGoalAdded(Body, frozen=True):
    ENTITY = "sub_goal"
    ID_FIELD = "sub_goal"
    CREATES = True
    sub_goal: Uuid
    text: Text
    due: IsoDate | None = None
    status: SubGoalStatus = "open"
    position: Position = "V"


class SubGoalRevised(Body, frozen=True):
    ENTITY = "sub_goal"
    ID_FIELD = "sub_goal"
    sub_goal: Uuid
    text: Text | UnsetType = UNSET
    due: IsoDate | None | UnsetType = UNSET
    status: SubGoalStatus | UnsetType = UNSET
    position: Position | UnsetType = UNSET
    replaces: Replaces = []


# --- phases and their knowledge / process needs -----------------------------------------


class PhaseAdded(Body, frozen=True):
    ENTITY = "phase"
    ID_FIELD = "phase"
    CREATES = True
    phase: Uuid
    name: ShortText
    position: Position
    description: Text | None = None
    key_question: KeyQuestion | None = None
    planned_start: IsoDate | None = None
    planned_end: IsoDate | None = None
    actual_start: IsoDate | None = None
    actual_end: IsoDate | None = None
    status: PhaseStatus = "planned"


class PhaseRevised(Body, frozen=True):
    ENTITY = "phase"
    ID_FIELD = "phase"
    phase: Uuid
    name: ShortText | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    key_question: KeyQuestion | None | UnsetType = UNSET
    planned_start: IsoDate | None | UnsetType = UNSET
    planned_end: IsoDate | None | UnsetType = UNSET
    actual_start: IsoDate | None | UnsetType = UNSET
    actual_end: IsoDate | None | UnsetType = UNSET
    status: PhaseStatus | UnsetType = UNSET
    replaces: Replaces = []


class PhaseMoved(Body, frozen=True):
    ENTITY = "phase"
    ID_FIELD = "phase"
    phase: Uuid
    position: Position
    replaces: Replaces = []


class NeedIdentified(Body, frozen=True):
    """A knowledge need or a process need, listed under a phase (the tablecloth)."""

    ENTITY = "need"
    ID_FIELD = "need"
    CREATES = True
    need: Uuid
    phase: Uuid | None
    kind: NeedKind
    text: Text
    status: NeedStatus = "open"


class NeedRevised(Body, frozen=True):
    ENTITY = "need"
    ID_FIELD = "need"
    need: Uuid
    kind: NeedKind | UnsetType = UNSET
    text: Text | UnsetType = UNSET
    status: NeedStatus | UnsetType = UNSET
    replaces: Replaces = []


class NeedMoved(Body, frozen=True):
    ENTITY = "need"
    ID_FIELD = "need"
    need: Uuid
    phase: Uuid | None
    replaces: Replaces = []


# --- activities ------------------------------------------------------------------------


class ActivityPlanned(Body, frozen=True):
    ENTITY = "activity"
    ID_FIELD = "activity"
    CREATES = True
    activity: Uuid
    title: ShortText
    position: Position
    phase: Uuid | None = None
    sub_goal: Uuid | None = None
    kind: ActivityKind = "workshop"
    purpose: Text | None = None
    method: Text | None = None
    date: IsoDate | None = None
    duration_minutes: Minutes | None = None
    place: ShortText | None = None
    mode: Mode | None = None
    responsible: ShortText | None = None
    status: ActivityStatus = "planned"
    outcome: Text | None = None


class ActivityRevised(Body, frozen=True):
    ENTITY = "activity"
    ID_FIELD = "activity"
    activity: Uuid
    title: ShortText | UnsetType = UNSET
    sub_goal: Uuid | None | UnsetType = UNSET
    kind: ActivityKind | UnsetType = UNSET
    purpose: Text | None | UnsetType = UNSET
    method: Text | None | UnsetType = UNSET
    place: ShortText | None | UnsetType = UNSET
    mode: Mode | None | UnsetType = UNSET
    responsible: ShortText | None | UnsetType = UNSET
    status: ActivityStatus | UnsetType = UNSET
    outcome: Text | None | UnsetType = UNSET
    replaces: Replaces = []


class ActivityScheduled(Body, frozen=True):
    ENTITY = "activity"
    ID_FIELD = "activity"
    activity: Uuid
    date: IsoDate | None | UnsetType = UNSET
    duration_minutes: Minutes | None | UnsetType = UNSET
    replaces: Replaces = []


class ActivityMoved(Body, frozen=True):
    """Moved to another phase and/or another place in the order."""

    ENTITY = "activity"
    ID_FIELD = "activity"
    activity: Uuid
    phase: Uuid | None | UnsetType = UNSET
    position: Position | UnsetType = UNSET
    replaces: Replaces = []


class ActivityCompleted(Body, frozen=True):
    ENTITY = "activity"
    ID_FIELD = "activity"
    activity: Uuid
    status: Literal["done"] = "done"
    outcome: Text | None | UnsetType = UNSET
    replaces: Replaces = []


# --- actor analysis ---------------------------------------------------------------------


class ActorIdentified(Body, frozen=True):
    ENTITY = "actor"
    ID_FIELD = "actor"
    CREATES = True
    actor: Uuid
    name: ShortText
    type: ActorType = "organisation"
    category: ActorCategory = "other"
    participation: Participation | None = None
    influence: Score | None = None
    interest: Score | None = None
    stance: Stance | None = None
    bellwether: bool = False
    strategy: Strategy | None = None
    personal_data: bool = False
    description: Text | None = None


class ActorClassified(Body, frozen=True):
    """The analysis part of an actor: redone between phases."""

    ENTITY = "actor"
    ID_FIELD = "actor"
    actor: Uuid
    participation: Participation | None | UnsetType = UNSET
    influence: Score | None | UnsetType = UNSET
    interest: Score | None | UnsetType = UNSET
    stance: Stance | None | UnsetType = UNSET
    bellwether: bool | UnsetType = UNSET
    strategy: Strategy | None | UnsetType = UNSET
    replaces: Replaces = []


class ActorRevised(Body, frozen=True):
    ENTITY = "actor"
    ID_FIELD = "actor"
    actor: Uuid
    name: ShortText | UnsetType = UNSET
    type: ActorType | UnsetType = UNSET
    category: ActorCategory | UnsetType = UNSET
    personal_data: bool | UnsetType = UNSET
    description: Text | None | UnsetType = UNSET
    replaces: Replaces = []


# --- involvement, decisions, notes -------------------------------------------------------


class InvolvementRecorded(Body, frozen=True):
    ENTITY = "involvement"
    ID_FIELD = "involvement"
    CREATES = True
    involvement: Uuid
    activity: Uuid | None
    category: ActorCategory
    participants: Count


class InvolvementRevised(Body, frozen=True):
    ENTITY = "involvement"
    ID_FIELD = "involvement"
    involvement: Uuid
    activity: Uuid | None | UnsetType = UNSET
    category: ActorCategory | UnsetType = UNSET
    participants: Count | UnsetType = UNSET
    replaces: Replaces = []


class DecisionRecorded(Body, frozen=True):
    ENTITY = "decision"
    ID_FIELD = "decision"
    CREATES = True
    decision: Uuid
    body: DecisionBody
    text: Text
    date: IsoDate | None = None
    case_ref: ShortText | None = None


class DecisionRevised(Body, frozen=True):
    ENTITY = "decision"
    ID_FIELD = "decision"
    decision: Uuid
    body: DecisionBody | UnsetType = UNSET
    text: Text | UnsetType = UNSET
    date: IsoDate | None | UnsetType = UNSET
    case_ref: ShortText | None | UnsetType = UNSET
    replaces: Replaces = []


class NoteWritten(Body, frozen=True):
    ENTITY = "note"
    ID_FIELD = "note"
    CREATES = True
    note: Uuid
    target: Uuid | None
    text: Text


class NoteRevised(Body, frozen=True):
    ENTITY = "note"
    ID_FIELD = "note"
    note: Uuid
    target: Uuid | None | UnsetType = UNSET
    text: Text | UnsetType = UNSET
    replaces: Replaces = []


# --- removal and conflict resolution (any entity kind) ----------------------------------


class EntityRemoved(Body, frozen=True):
    """A tombstone. `replaces` names the field heads the remover saw: an edit
    not among them arrived "after removal" and is surfaced, never dropped."""

    ID_FIELD = "entity"
    ROLE = ROLE_REMOVAL
    NOT_FIELDS = frozenset({"replaces", "kind", "entity"})
    entity: Uuid
    kind: EntityKind
    replaces: Replaces = []

    def entity_kind(self) -> str:
        return self.kind


# Any field's type (text, number, yes/no, list, an entity id as 16 bytes…);
# checked against the field's own type by `schema.validate_value` on read.
ResolvedValue = Any


class ConflictResolved(Body, frozen=True):
    """Sets one field to a chosen or merged value, replacing all its heads."""

    ID_FIELD = "entity"
    ROLE = ROLE_RESOLUTION
    NOT_FIELDS = frozenset({"replaces", "kind", "entity", "field", "value"})
    entity: Uuid
    kind: EntityKind
    field: ShortText
    value: ResolvedValue
    replaces: Replaces = []

    def entity_kind(self) -> str:
        return self.kind

    def sets(self) -> list[tuple[str, Any]]:
        return [(self.field, self.value)]


# --- the workspace's membership log ------------------------------------------------------
#
# Membership is a signed log like every plan: its events live in the log whose
# plan id is the workspace id, and only the workspace's admin keys may sign
# them (core.identity.membership folds them; the plan fold skips them).

MemberRole = Literal["owner", "editor", "viewer"]
# Who the person works for, for research views ("municipal staff vs advisers"):
# municipality (staff, politicians), adviser (Distriktssenteret, the county),
# researcher, other. None: not said (events from before the field existed).
Affiliation = Literal["municipality", "adviser", "researcher", "other"]


class Cutoff(msgspec.Struct, frozen=True, array_like=True):
    """The last valid seq of a revoked device's chain in one plan."""

    plan: Uuid
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class MemberAdded(Body, frozen=True):
    """Enrols a device, or changes its person name, role or plans."""

    ROLE = ROLE_MEMBERSHIP
    device: DeviceKey
    name: ShortText
    role: MemberRole
    plans: Annotated[list[Uuid], msgspec.Meta(max_length=MAX_LIST)] = []  # empty: every plan
    affiliation: Affiliation | None = None


class MemberRevoked(Body, frozen=True):
    """Cuts a device off. `cutoffs`: the last seq of each of its chains the
    revoking replica held; the server extends them to what it holds when the
    revocation arrives. Later events from the device are quarantined."""

    ROLE = ROLE_MEMBERSHIP
    device: DeviceKey
    cutoffs: Annotated[list[Cutoff], msgspec.Meta(max_length=1_000)] = []


MEMBERSHIP_TYPES: tuple[type[Body], ...] = (MemberAdded, MemberRevoked)


BODY_TYPES: tuple[type[Body], ...] = (
    PlanCreated,
    PlanDetailsRevised,
    SocietalGoalSet,
    DesiredResultRevised,
    DesiredResultAssessed,
    KeyQuestionAnswered,
    ResearchConsentGiven,
    ResearchConsentWithdrawn,
    SubGoalAdded,
    SubGoalRevised,
    PhaseAdded,
    PhaseRevised,
    PhaseMoved,
    NeedIdentified,
    NeedRevised,
    NeedMoved,
    ActivityPlanned,
    ActivityRevised,
    ActivityScheduled,
    ActivityMoved,
    ActivityCompleted,
    ActorIdentified,
    ActorClassified,
    ActorRevised,
    InvolvementRecorded,
    InvolvementRevised,
    DecisionRecorded,
    DecisionRevised,
    NoteWritten,
    NoteRevised,
    EntityRemoved,
    ConflictResolved,
)


def _declare_settable(cls: type[Body]) -> None:
    skip = set(cls.NOT_FIELDS)
    if cls.ID_FIELD:
        skip.add(cls.ID_FIELD)
    cls._SETTABLE = tuple(
        (name, cls.FIELD_MAP.get(name, name)) for name in cls.__struct_fields__ if name not in skip
    )
    cls._FIELDS = tuple(field for _, field in cls._SETTABLE)
    attrs = [attr for attr, _ in cls._SETTABLE]
    if len(attrs) == 1:
        getter = attrgetter(attrs[0])
        cls._VALUES = staticmethod(lambda body: (getter(body),))
    elif attrs:
        cls._VALUES = staticmethod(attrgetter(*attrs))


for _cls in BODY_TYPES:
    _declare_settable(_cls)


def type_tag(cls: type[Body]) -> str:
    """The envelope's type tag of a body class: its (past-tense) class name.

    The tag lives in the signed envelope, not in the body, so bodies carry no
    msgspec tag field. Renaming a class is therefore a breaking change.
    """
    return cls.__name__


BODY_BY_TAG: dict[str, type[Body]] = {type_tag(cls): cls for cls in BODY_TYPES + MEMBERSHIP_TYPES}
