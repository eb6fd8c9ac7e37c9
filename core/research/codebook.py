"""The codebook of a research export, as data: every table, every column,
its type, its allowed values and its meaning in Bokmål and English.

The tables of an export are declared here once; the writers (CSV, Parquet,
SQLite) take their column names and types from `TABLES`, so a column
cannot exist without a codebook entry. Entity state tables get one column
per entity field, derived from the event catalogue (`core.events.schema`);
their meanings are in `FIELD_MEANINGS`, and a test checks every field has
one.

Column types (`Column.type`), and how each format stores them:

=========  ===========================================  =========  =======  ======
type       meaning                                      CSV        Parquet  SQLite
=========  ===========================================  =========  =======  ======
text       UTF-8 text                                   text       string   TEXT
id         an id as lowercase hex                       text       string   TEXT
date       ISO date YYYY-MM-DD                          text       string   TEXT
time       ISO-8601 UTC time with milliseconds          text       string   TEXT
json       JSON text (lists, several values, bodies)    text       string   TEXT
integer    64-bit integer                               digits     int64    INTEGER
boolean    true / false                                 true/false bool     INTEGER 0/1
bytes      raw bytes                                    base64     binary   BLOB
=========  ===========================================  =========  =======  ======

An empty CSV cell is a null (JSON Lines, Parquet and SQLite keep nulls).
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.events.bodies import BODY_BY_TAG
from core.events.schema import ENTITY_FIELDS, choices, field_type

TYPES = ("text", "id", "date", "time", "json", "integer", "boolean", "bytes")


class Column(msgspec.Struct, frozen=True):
    name: str
    type: str
    nb: str
    en: str
    values: tuple[str, ...] = ()  # allowed values of a closed column (empty: open)


class Table(msgspec.Struct, frozen=True):
    name: str
    nb: str
    en: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


KIND_NAMES: dict[str, tuple[str, str]] = {
    "plan": ("prosessplan", "process plan"),
    "sub_goal": ("delmål", "sub-goal"),
    "phase": ("fase", "phase"),
    "need": ("kunnskaps- eller prosessbehov", "knowledge or process need"),
    "activity": ("aktivitet", "activity"),
    "actor": ("aktør (aktøranalysen)", "actor (the actor analysis)"),
    "involvement": ("medvirkning", "involvement"),
    "decision": ("vedtak", "decision"),
    "note": ("notat", "note"),
}

_Q = "svar på det sentrale spørsmålet"
_QE = "answer to the key question"
FIELD_MEANINGS: dict[tuple[str, str], tuple[str, str]] = {
    ("plan", "title"): ("planens tittel", "the plan's title"),
    ("plan", "municipality"): ("kommunens navn", "the municipality's name"),
    ("plan", "municipality_number"): ("kommunenummer", "municipality number"),
    ("plan", "municipality_sami"): ("kommunens samiske navn", "the municipality's Sámi name"),
    ("plan", "county"): ("fylke", "county"),
    ("plan", "themes"): ("tema (JSON-liste)", "themes (JSON list)"),
    ("plan", "kind"): ("lang eller kort plan", "long or short plan"),
    ("plan", "status"): ("planens status", "the plan's status"),
    ("plan", "period_start"): ("periodens start", "start of the plan period"),
    ("plan", "period_end"): ("periodens slutt", "end of the plan period"),
    ("plan", "societal_goal"): ("samfunnsmålet", "the societal goal"),
    ("plan", "societal_goal_horizon"): ("årstall for samfunnsmålet", "horizon year of the goal"),
    ("plan", "desired_result"): (
        "ønsket resultat (skrevet som noe som har skjedd)",
        "desired result (written as something that has happened)",
    ),
    ("plan", "desired_result_due"): ("frist for ønsket resultat", "due date of the result"),
    ("plan", "desired_result_assessment"): (
        "vurdering av ønsket resultat",
        "assessment of the desired result",
    ),
    ("plan", "q_who_are_we"): (f"{_Q} «Hvem er vi?»", f"{_QE} 'Who are we?'"),
    ("plan", "q_knowledge_base"): (
        f"{_Q} «Hvilket kunnskapsgrunnlag har vi?»",
        f"{_QE} 'What knowledge base do we have?'",
    ),
    ("plan", "q_where_to"): (f"{_Q} «Hvor vil vi?»", f"{_QE} 'Where do we want to go?'"),
    ("plan", "q_what_we_do"): (f"{_Q} «Hva gjør vi?»", f"{_QE} 'What do we do?'"),
    ("plan", "q_resources"): (
        f"{_Q} «Hvilke ressurser trenger vi?»",
        f"{_QE} 'What resources do we need?'",
    ),
    ("plan", "q_actors"): (
        f"{_Q} «Hvilke aktører bør vi involvere?»",
        f"{_QE} 'Which actors should we involve?'",
    ),
    ("plan", "research_consent"): (
        "samtykke til forskningseksport: given (gitt) eller withdrawn (trukket)",
        "consent to research exports: given or withdrawn",
    ),
    ("plan", "research_consent_note"): (
        "merknad til samtykket (vilkår, vedtak)",
        "note on the consent (terms, decision)",
    ),
    ("sub_goal", "text"): ("delmålets tekst", "the sub-goal's text"),
    ("sub_goal", "due"): ("frist", "due date"),
    ("sub_goal", "status"): ("status", "status"),
    ("sub_goal", "position"): (
        "rekkefølgenøkkel (sorteres som tekst)",
        "order key (sorts as text)",
    ),
    ("phase", "name"): ("fasens navn", "the phase's name"),
    ("phase", "position"): ("rekkefølgenøkkel (sorteres som tekst)", "order key (sorts as text)"),
    ("phase", "description"): ("beskrivelse", "description"),
    ("phase", "key_question"): ("fasens sentrale spørsmål", "the phase's key question"),
    ("phase", "planned_start"): ("planlagt start", "planned start"),
    ("phase", "planned_end"): ("planlagt slutt", "planned end"),
    ("phase", "actual_start"): ("faktisk start", "actual start"),
    ("phase", "actual_end"): ("faktisk slutt", "actual end"),
    ("phase", "status"): ("status", "status"),
    ("need", "phase"): ("fasen behovet hører til (id)", "the phase the need belongs to (id)"),
    ("need", "kind"): ("kunnskaps- eller prosessbehov", "knowledge or process need"),
    ("need", "text"): ("behovet", "the need"),
    ("need", "status"): ("status", "status"),
    ("activity", "title"): ("tittel", "title"),
    ("activity", "position"): (
        "rekkefølgenøkkel (sorteres som tekst)",
        "order key (sorts as text)",
    ),
    ("activity", "phase"): ("fase (id)", "phase (id)"),
    ("activity", "sub_goal"): ("delmål (id)", "sub-goal (id)"),
    ("activity", "kind"): ("type aktivitet", "kind of activity"),
    ("activity", "purpose"): ("formål", "purpose"),
    ("activity", "method"): ("metode", "method"),
    ("activity", "date"): ("dato", "date"),
    ("activity", "duration_minutes"): ("varighet i minutter", "duration in minutes"),
    ("activity", "place"): ("sted", "place"),
    ("activity", "mode"): ("fysisk, digitalt eller hybrid", "physical, digital or hybrid"),
    ("activity", "responsible"): ("ansvarlig", "responsible"),
    ("activity", "status"): ("status", "status"),
    ("activity", "outcome"): ("resultat", "outcome"),
    ("actor", "name"): ("aktørens navn", "the actor's name"),
    ("actor", "type"): ("person, organisasjon eller gruppe", "person, organisation or group"),
    ("actor", "category"): ("aktørkategori", "actor category"),
    ("actor", "participation"): ("må, bør eller kan delta", "must, should or can take part"),
    ("actor", "influence"): ("innflytelse 0–3", "influence 0–3"),
    ("actor", "interest"): ("interesse 0–3", "interest 0–3"),
    ("actor", "stance"): ("holdning", "stance"),
    ("actor", "bellwether"): ("bjellesau", "bellwether"),
    ("actor", "strategy"): ("strategi for involvering", "involvement strategy"),
    ("actor", "personal_data"): (
        "inneholder personopplysninger",
        "holds personal data",
    ),
    ("actor", "description"): ("beskrivelse", "description"),
    ("involvement", "activity"): ("aktivitet (id)", "activity (id)"),
    ("involvement", "category"): ("deltakerkategori", "participant category"),
    ("involvement", "participants"): ("antall deltakere", "number of participants"),
    ("decision", "body"): ("organet som vedtok", "the body that decided"),
    ("decision", "text"): ("vedtakets tekst", "the decision's text"),
    ("decision", "date"): ("dato", "date"),
    ("decision", "case_ref"): ("saksnummer («PS 21/31»)", "case reference ('PS 21/31')"),
    ("note", "target"): ("det notatet gjelder (id, valgfritt)", "what the note is about (id)"),
    ("note", "text"): ("notatets tekst", "the note's text"),
}

_EVENT_TYPES = tuple(sorted(BODY_BY_TAG))
_KINDS = tuple(KIND_NAMES)
_SERVER_TIME_NB = (
    "tidspunktet serveren mottok hendelsen, slik serveren kvitterte til denne enheten; "
    "bare kjent for denne enhetens egne hendelser etter synkronisering, ellers tom. "
    "Ikke signert"
)
_SERVER_TIME_EN = (
    "when the server received the event, as the server acknowledged it to this device; "
    "known only for this device's own events after a sync, otherwise null. Not signed"
)


def _c(name: str, type_: str, nb: str, en: str, values: tuple[str, ...] = ()) -> Column:
    return Column(name, type_, nb, en, values)


PLAN_ID = _c("plan_id", "id", "planens id", "the plan's id")
EVENT_ID = _c("event_id", "id", "hendelsens id (SHA-256 av de signerte bytene)", "event id")
AUTHOR = _c(
    "author_device",
    "id",
    "forfatterens enhetsnøkkel (Ed25519, offentlig)",
    "the author's device key (Ed25519 public key)",
)
PERSON = _c(
    "person",
    "text",
    "personen enheten tilhører, fra medlemsloggen; tom hvis enheten ikke er medlem",
    "the person the device belongs to, from the membership log; null if not a member",
)
ROLE = _c(
    "role",
    "text",
    "enhetens rolle i arbeidsområdet ved eksporten",
    "the device's role in the workspace at the cut-off",
    ("owner", "editor", "viewer"),
)
SEQ = _c("seq", "integer", "løpenummer i forfatterens kjede for planen", "seq in the chain")
HLC = _c(
    "hlc",
    "integer",
    "enhetens hybride logiske klokke (48 bit ms + 16 bit teller)",
    "the device's hybrid logical clock (48-bit ms + 16-bit counter)",
)
DEVICE_TIME = _c(
    "device_time",
    "time",
    "enhetens klokkeslett (fra HLC, UTC); skjeve klokker er mulig",
    "the device's wall-clock time (from the HLC, UTC); clocks may be skewed",
)
EVENT_TYPE = _c("type", "text", "hendelsestype", "event type", _EVENT_TYPES)
ENTITY_KIND = _c("entity_kind", "text", "hvilken slags enhet det gjelder", "kind of entity", _KINDS)
ENTITY_ID = _c("entity_id", "id", "enhetens id", "the entity's id")

EVENTS = Table(
    "events",
    "Alle hendelser, med de signerte bytene",
    "Every event, with its signed bytes",
    (
        EVENT_ID,
        PLAN_ID,
        AUTHOR,
        PERSON,
        ROLE,
        SEQ,
        _c(
            "prev_event_id",
            "id",
            "forrige hendelse i samme kjede (nuller for seq 1)",
            "the chain's previous event (zeros for seq 1)",
        ),
        HLC,
        DEVICE_TIME,
        _c("server_received_time", "time", _SERVER_TIME_NB, _SERVER_TIME_EN),
        EVENT_TYPE,
        ENTITY_KIND,
        ENTITY_ID,
        _c(
            "body_json",
            "json",
            "hendelsens innhold, dekodet (id-er som hex)",
            "the event's body, decoded (ids as hex)",
        ),
        _c(
            "signed_bytes",
            "bytes",
            "de eksakte signerte bytene (innhold ‖ Ed25519-signatur); base64 i CSV",
            "the exact signed bytes (payload ‖ Ed25519 signature); base64 in CSV",
        ),
    ),
)

CHAINS = Table(
    "chains",
    "Hver kjede (plan, enhet) med toppen den er eksportert til",
    "Every chain (plan, device) and the head it is exported up to",
    (
        PLAN_ID,
        AUTHOR,
        PERSON,
        _c("events", "integer", "antall hendelser (= seq for toppen)", "events (= the head's seq)"),
        _c("head_event_id", "id", "toppens hendelses-id", "the head's event id"),
        _c("first_device_time", "time", "første hendelse", "first event"),
        _c("last_device_time", "time", "siste hendelse", "last event"),
    ),
)

MEMBERS = Table(
    "members",
    "Medlemmer i arbeidsområdet, fra den signerte medlemsloggen",
    "Members of the workspace, from the signed membership log",
    (
        _c("device", "id", "enhetsnøkkel", "device key"),
        _c("person", "text", "personens navn", "the person's name"),
        ROLE,
        _c(
            "affiliation",
            "text",
            "hvem personen arbeider for: kommunen, veileder (Distriktssenteret, fylket), "
            "forsker eller annet; tom: ikke oppgitt",
            "who the person works for: the municipality, an adviser (Distriktssenteret, "
            "the county), a researcher, or other; null: not given",
            ("municipality", "adviser", "researcher", "other"),
        ),
        _c("admin", "boolean", "administratornøkkel (tillitsanker)", "admin key (trust anchor)"),
        _c("revoked", "boolean", "tilbakekalt", "revoked"),
        _c(
            "plans",
            "json",
            "planene enheten har tilgang til (JSON-liste; tom: alle)",
            "the plans the device may use (JSON list; empty: all)",
        ),
    ),
)


AGGREGATES = Table(
    "aggregates",
    "Planer uten forskningssamtykke: bare opptellinger",
    "Plans without research consent: counts only",
    (
        PLAN_ID,
        _c(
            "consent",
            "text",
            "samtykket ved eksporten: none (aldri gitt) eller withdrawn (trukket)",
            "consent at the cut-off: none (never given) or withdrawn",
            ("none", "withdrawn"),
        ),
        _c(
            "measure",
            "text",
            "hva som telles: hendelser per type og måned, enheter per slag (levende, "
            "fjernede), deltakere per kategori, forfatterenheter",
            "what is counted: events per type and month, entities per kind (live, removed), "
            "participants per category, authoring devices",
            ("events", "entities", "removed_entities", "participants", "devices"),
        ),
        _c("month", "text", "måned (YYYY-MM, enhetens klokke) for events", "month (YYYY-MM)"),
        _c(
            "key",
            "text",
            "hendelsestype, enhetsslag eller deltakerkategori",
            "event type, entity kind or participant category",
        ),
        _c("value", "integer", "antall", "count"),
    ),
)


def _field_column(kind: str, field: str) -> Column:
    nb, en = FIELD_MEANINGS[(kind, field)]
    return Column(
        field, column_type(kind, field), nb, en, tuple(str(v) for v in choices(kind, field))
    )


def column_type(kind: str, field: str) -> str:
    """The export type of an entity field, from its type in the catalogue."""
    info = msgspec.inspect.type_info(field_type(kind, field))
    members = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    for m in members:
        match m:
            case msgspec.inspect.BytesType():
                return "id"
            case msgspec.inspect.ListType():
                return "json"
            case msgspec.inspect.BoolType():
                return "boolean"
            case msgspec.inspect.IntType():
                return "integer"
            case msgspec.inspect.StrType(pattern=p) if p and p.startswith(r"^\d{4}-"):
                return "date"
    return "text"


def state_table(kind: str) -> Table:
    nb, en = KIND_NAMES[kind]
    lead = [PLAN_ID] if kind != "plan" else []
    return Table(
        kind,
        f"{nb}: gjeldende tilstand ved eksporten (alle, også fjernede)",
        f"{en}: current state at the cut-off (all, removed ones too)",
        (
            *lead,
            _c("id", "id", "id", "id"),
            _c(
                "created_event_id",
                "id",
                "hendelsen som opprettet den (tom: bare endringer er kjent)",
                "the event that created it (null: only edits are known)",
            ),
            _c("removed", "boolean", "fjernet (gravstein)", "removed (tombstone)"),
            _c(
                "conflicts",
                "json",
                "felt med flere samtidige verdier (JSON-liste); verdien vist er den nyeste",
                "fields with several concurrent values (JSON list); the value shown is the newest",
            ),
            *(_field_column(kind, f) for f in ENTITY_FIELDS[kind]),
        ),
    )


def history_table(kind: str) -> Table:
    nb, en = KIND_NAMES[kind]
    return Table(
        f"{kind}_history",
        f"{nb}: full endringshistorikk, ett felt per rad, gammel → ny",
        f"{en}: full change history, one field per row, old → new",
        (
            EVENT_ID,
            PLAN_ID,
            ENTITY_ID,
            AUTHOR,
            PERSON,
            SEQ,
            HLC,
            DEVICE_TIME,
            EVENT_TYPE,
            _c("field", "text", "feltet som ble endret (tom: hele enheten)", "field changed"),
            _c(
                "old_json",
                "json",
                "verdiene endringen erstattet (JSON-liste; flere ved konflikt)",
                "the values the edit replaced (JSON list; several after a conflict)",
            ),
            _c("new_json", "json", "ny verdi (JSON)", "new value (JSON)"),
            _c(
                "note",
                "text",
                "merknad: removed, conflict resolved, …",
                "note: removed, conflict resolved, …",
            ),
        ),
    )


CODEBOOK = Table(
    "codebook",
    "Kodebok: hver kolonne i hver tabell",
    "Codebook: every column of every table",
    (
        _c("table", "text", "tabell", "table"),
        _c("column", "text", "kolonne", "column"),
        _c("type", "text", "type (se docs/research.md)", "type (see docs/research.md)", TYPES),
        _c("allowed_values", "json", "tillatte verdier (JSON-liste; tom: fritt)", "allowed values"),
        _c("meaning_nb", "text", "betydning på bokmål", "meaning in Bokmål"),
        _c("meaning_en", "text", "betydning på engelsk", "meaning in English"),
    ),
)

ENTITY_TABLE_KINDS: tuple[str, ...] = tuple(ENTITY_FIELDS)

TABLES: tuple[Table, ...] = (
    EVENTS,
    CHAINS,
    MEMBERS,
    AGGREGATES,
    *(state_table(k) for k in ENTITY_TABLE_KINDS),
    *(history_table(k) for k in ENTITY_TABLE_KINDS),
)
TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def codebook_rows() -> list[dict[str, Any]]:
    """One row per column of every table (the codebook table itself included)."""
    rows = []
    for table in (*TABLES, CODEBOOK):
        for col in table.columns:
            rows.append(
                {
                    "table": table.name,
                    "column": col.name,
                    "type": col.type,
                    "allowed_values": msgspec.json.encode(list(col.values)).decode()
                    if col.values
                    else None,
                    "meaning_nb": col.nb,
                    "meaning_en": col.en,
                }
            )
    for key, (nb, en) in JSONL_KEYS.items():
        rows.append(
            {
                "table": "events.jsonl",
                "column": key,
                "type": JSONL_TYPES[key],
                "allowed_values": None,
                "meaning_nb": nb,
                "meaning_en": en,
            }
        )
    return rows


# The JSON Lines file is one object per event; its keys, for the codebook.
JSONL_KEYS: dict[str, tuple[str, str]] = {
    "id": ("hendelsens id (SHA-256 av signed_bytes)", "event id (SHA-256 of signed_bytes)"),
    "signed_bytes": ("de eksakte signerte bytene, base64", "the exact signed bytes, base64"),
    "plan": ("planens id (arbeidsområdets id: medlemsloggen)", "plan id (workspace id: members)"),
    "author_device": (AUTHOR.nb, AUTHOR.en),
    "person": (PERSON.nb, PERSON.en),
    "role": (ROLE.nb, ROLE.en),
    "seq": (SEQ.nb, SEQ.en),
    "prev": ("forrige hendelse i kjeden", "the chain's previous event"),
    "hlc": (HLC.nb, HLC.en),
    "device_time": (DEVICE_TIME.nb, DEVICE_TIME.en),
    "server_received_time": (_SERVER_TIME_NB, _SERVER_TIME_EN),
    "type": (EVENT_TYPE.nb, EVENT_TYPE.en),
    "entity_kind": (ENTITY_KIND.nb, ENTITY_KIND.en),
    "entity_id": (ENTITY_ID.nb, ENTITY_ID.en),
    "body": ("hendelsens innhold, dekodet (id-er som hex)", "the decoded body (ids as hex)"),
    "changes": (
        "projeksjonens feltendringer: [{field, old, new, note}]",
        "the projection's field changes: [{field, old, new, note}]",
    ),
}
JSONL_TYPES: dict[str, str] = {
    "id": "id",
    "signed_bytes": "bytes",
    "plan": "id",
    "author_device": "id",
    "person": "text",
    "role": "text",
    "seq": "integer",
    "prev": "id",
    "hlc": "integer",
    "device_time": "time",
    "server_received_time": "time",
    "type": "text",
    "entity_kind": "text",
    "entity_id": "id",
    "body": "json",
    "changes": "json",
}
