"""The same field changes done by three peers, for the rebuild comparison.

Each peer gets the workload as plain field changes (entity, kind, {field:
value}), one change per vidda event, and stores them its own idiomatic way:

* `eventsourcing` 9.5: one `Plan` aggregate (the plan is vidda's stream
  too) with a `FieldsSet` event per change, SQLite persistence; rebuild is
  `repository.get(plan_id)` (no snapshots, no cache).
* pycrdt: one Doc, a root map "plan" of entity maps, one transaction per
  change; the incremental update of each transaction is kept; rebuild is a
  fresh Doc applying them one by one.
* loro: one LoroDoc, a root map per entity, one commit per change; the
  local update of each commit is kept; rebuild is a fresh LoroDoc importing
  them one by one (and, as its best case, `import_batch` of all of them).

None of them checks a signature or a hash chain; vidda does both.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

Change = tuple[str, str, dict[str, Any]]  # entity hex, kind, {field: value}
SAVE_EVERY = 10_000
_updates = msgspec.msgpack.Decoder(list[bytes])


# --- eventsourcing ----------------------------------------------------------------------

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
except ImportError:  # pragma: no cover - bench extra not installed
    Application = None  # type: ignore[assignment,misc]
else:

    class Plan(Aggregate):
        """A plan as one aggregate whose events set entity fields."""

        @event("Created")
        def __init__(self, title: str) -> None:
            self.title = title
            self.entities: dict[str, dict[str, Any]] = {}

        class FieldsSet(Aggregate.Event):
            entity: str
            kind: str
            fields: dict[str, Any]

            def apply(self, aggregate: Aggregate) -> None:
                ents = aggregate.entities  # type: ignore[attr-defined]
                ent = ents.get(self.entity)
                if ent is None:
                    ent = ents[self.entity] = {}
                ent.update(self.fields)

        def set_fields(self, entity: str, kind: str, fields: dict[str, Any]) -> None:
            self.trigger_event(self.FieldsSet, entity=entity, kind=kind, fields=fields)

    class PlanApp(Application):  # type: ignore[type-arg]
        pass


def _es_app(path: Path) -> Any:
    return PlanApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})


def es_build(path: Path, changes: Iterable[Change]) -> None:
    tmp = path.with_name(f"{path.name}.building-{os.getpid()}")
    app = _es_app(tmp)
    plan = Plan("bench")
    n = 0
    for entity, kind, fields in changes:
        plan.set_fields(entity, kind, fields)
        n += 1
        if n % SAVE_EVERY == 0:
            app.save(plan)
    app.save(plan)
    app.close()
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps({"plan": str(plan.id), "changes": n}))


def es_rebuild(path: Path) -> tuple[float, int]:
    """Seconds to get the aggregate from the store; number of entities."""
    import uuid

    plan_id = uuid.UUID(json.loads(path.with_suffix(".json").read_text())["plan"])
    app = _es_app(path)
    try:
        start = time.perf_counter()
        plan = app.repository.get(plan_id)
        elapsed = time.perf_counter() - start
    finally:
        app.close()
    return elapsed, len(plan.entities)


# --- pycrdt --------------------------------------------------------------------------------


def pycrdt_build(path: Path, changes: Iterable[Change]) -> None:
    import pycrdt

    doc: Any = pycrdt.Doc()
    updates: list[bytes] = []
    doc.observe(lambda ev: updates.append(ev.update))
    root = doc.get("plan", type=pycrdt.Map)
    for entity, _kind, fields in changes:
        with doc.transaction():
            ent = root.get(entity)
            if ent is None:
                root[entity] = ent = pycrdt.Map()
            for name, value in fields.items():
                ent[name] = value
    _write_updates(path, updates)


def pycrdt_rebuild(path: Path) -> tuple[float, int, int]:
    """Seconds to apply every update to a fresh Doc; entities; updates."""
    import pycrdt

    updates = _read_updates(path)
    start = time.perf_counter()
    doc: Any = pycrdt.Doc()
    for u in updates:
        doc.apply_update(u)
    elapsed = time.perf_counter() - start
    return elapsed, len(doc.get("plan", type=pycrdt.Map)), len(updates)


# --- loro ----------------------------------------------------------------------------------


def loro_build(path: Path, changes: Iterable[Change]) -> None:
    from loro import LoroDoc

    doc = LoroDoc()
    updates: list[bytes] = []

    def keep(update: bytes) -> bool:
        updates.append(bytes(update))
        return True

    sub = doc.subscribe_local_update(keep)
    for entity, _kind, fields in changes:
        ent = doc.get_map(entity)
        for name, value in fields.items():
            ent.insert(name, value)
        doc.commit()
    del sub
    _write_updates(path, updates)


def loro_rebuild(path: Path, *, batch: bool = False) -> tuple[float, int, int]:
    """Seconds to import every update into a fresh LoroDoc; entities; updates."""
    from loro import LoroDoc

    updates = _read_updates(path)
    start = time.perf_counter()
    doc = LoroDoc()
    if batch:
        doc.import_batch(updates)
    else:
        for u in updates:
            doc.import_(u)
    elapsed = time.perf_counter() - start
    return elapsed, len(doc.get_deep_value()), len(updates)


# --- update files ----------------------------------------------------------------------------


def _write_updates(path: Path, updates: list[bytes]) -> None:
    tmp = path.with_name(f"{path.name}.building-{os.getpid()}")
    tmp.write_bytes(msgspec.msgpack.encode(updates))
    os.replace(tmp, path)


def _read_updates(path: Path) -> list[bytes]:
    return _updates.decode(path.read_bytes())
