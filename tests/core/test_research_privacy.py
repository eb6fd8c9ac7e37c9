"""Research consent and private exports.

* A plan whose consent was never given, or was withdrawn last (or
  concurrently with a grant), is exported as aggregate counts only: none of
  its events, ids or texts are in any file, and the manifest says so.
* `--pseudonymise`: no person's name (members, personal actors) in any file
  of any format, stable pseudonyms under one key, others under another.
* `--anonymise`: no linking key at all (device keys, event ids, signed
  bytes, names, the pseudonym key).
* verify-export handles both honestly: hash and chain-shape checks, and the
  holder of the log proves the export by deriving it again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.bodies import MemberAdded
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.research.export import derive
from core.research.manifest import MANIFEST, decode_manifest, encode_manifest
from core.research.privacy import ANONYMISED, FULL, PSEUDONYMISED, redact
from core.research.snapshot import read_snapshot
from core.research.verify_export import compare_with, verify_export
from core.research.writers import FORMATS, export_to
from core.store.event_log import EventLog

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
# The last is an actor's name with a role after the comma, as people write
# them ("Ivar Torset, næringssjef"): the name alone, and each of its words,
# must go; the role is no name.
NAMES = ("Kari Nordmann", "Bjørn Ávži", "Ola Personvern", "Áile Sárá, daglig leder")


class World:
    def __init__(self, root: Path) -> None:
        self.db = root / "vidda.db"
        self.workspace = new_uuid7()
        self.admin = DeviceKey.from_seed(bytes(32))
        self.other = DeviceKey.from_seed(bytes([1]) * 32)
        self.plan = b""  # consent given
        self.silent = b""  # never given
        self.withdrawn = b""  # given, then withdrawn
        self.concurrent = b""  # given and withdrawn concurrently
        self.personal_actor = b""


async def _build(root: Path) -> World:
    w = World(root)
    log = await EventLog.open(w.db, workspace=w.workspace)
    try:
        await log.append(
            w.admin,
            w.workspace,
            [
                MemberAdded(
                    device=w.admin.public_key,
                    name=NAMES[0],
                    role="owner",
                    affiliation="adviser",
                ),
                MemberAdded(
                    device=w.other.public_key,
                    name=NAMES[1],
                    role="editor",
                    affiliation="municipality",
                ),
            ],
        )
        w.plan, bodies = aure_plan()  # consent given (the demo's last event)
        await log.append(w.admin, w.plan, bodies)
        state = await log.load_state(w.plan)
        actor, body = edits.add_entity(
            state,
            "actor",
            {
                "name": NAMES[2],
                "type": "person",
                "category": "residents",
                "personal_data": True,
                "description": f"{NAMES[2]} driver butikken på Tustna",
            },
        )
        w.personal_actor = actor
        await log.append(w.other, w.plan, [body])
        state = await log.load_state(w.plan)
        _, note = edits.add_entity(
            state, "note", {"target": actor, "text": "Ring henne før møtet, sier Kari."}
        )
        _, note2 = edits.add_entity(
            state, "note", {"target": None, "text": f"{NAMES[1]} tar med kaffe."}
        )
        _, note3 = edits.add_entity(
            state,
            "note",
            {"target": None, "text": "Áile Sárá var skeptisk, sier Ávži. En daglig leder må med."},
        )
        await log.append(w.other, w.plan, [note, note2, note3])
        state = await log.load_state(w.plan)
        await log.append(
            w.other, w.plan, edits.set_fields(state, "actor", actor, {"name": NAMES[3]})
        )

        for attr in ("silent", "withdrawn", "concurrent"):
            plan, bodies = edits.new_plan(title=f"Plan {attr}", municipality="Vardø")
            setattr(w, attr, plan)
            await log.append(w.admin, plan, bodies)
        state = await log.load_state(w.withdrawn)
        await log.append(w.admin, w.withdrawn, [edits.record_consent(state, given=True)])
        state = await log.load_state(w.withdrawn)
        await log.append(w.other, w.withdrawn, [edits.record_consent(state, given=False)])
        state = await log.load_state(w.concurrent)
        await log.append(w.admin, w.concurrent, [edits.record_consent(state, given=True)])
        await log.append(w.other, w.concurrent, [edits.record_consent(state, given=False)])
    finally:
        await log.close()
    return w


async def _derive(w: World, mode: str, key: bytes | None) -> Any:
    log = await EventLog.open(w.db)
    try:
        plans = [p for p, _ in await log.plans()]
        snap = await read_snapshot(log, plans, [w.admin.public_key])
    finally:
        await log.close()
    return redact(derive(snap), mode, key), snap.cutoff_rx


def _export(w: World, out: Path, mode: str, key: bytes | None = None) -> Path:
    derived, cutoff = asyncio.run(_derive(w, mode, key))
    export_to(out, derived, formats=FORMATS, command=["test"], cutoff_rx=cutoff)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return asyncio.run(_build(tmp_path_factory.mktemp("world")))


@pytest.fixture(scope="module")
def exports(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {
        FULL: _export(world, root / "full", FULL),
        PSEUDONYMISED: _export(world, root / "pseudo", PSEUDONYMISED, KEY),
        "pseudo_again": _export(world, root / "pseudo2", PSEUDONYMISED, KEY),
        "pseudo_other": _export(world, root / "pseudo3", PSEUDONYMISED, OTHER_KEY),
        ANONYMISED: _export(world, root / "anon", ANONYMISED),
    }


def every_text(folder: Path) -> str:
    """Every value of every file of an export as text: text files as they
    are, Parquet cells through pyarrow (they are compressed), SQLite cells."""
    import pyarrow.parquet as pq

    parts = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=repr))
        elif path.suffix == ".sqlite":
            conn = sqlite3.connect(path)
            try:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
                for t in tables:
                    parts.append(repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()))
            finally:
                conn.close()
        else:
            parts.append(path.read_text("utf-8"))
    return "\n".join(parts)


def _lines(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "events.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


# --- consent -------------------------------------------------------------------------------


def test_plans_without_consent_are_counts_only(world: World, exports: dict[str, Path]) -> None:
    out = exports[FULL]
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    entries = {p.plan: p for p in manifest.plans}
    assert entries[world.plan.hex()].consent == "given"
    assert entries[world.plan.hex()].content == "events"
    for plan, consent in (
        (world.silent, "none"),
        (world.withdrawn, "withdrawn"),
        (world.concurrent, "withdrawn"),
    ):
        entry = entries[plan.hex()]
        assert (entry.consent, entry.content, entry.chains) == (consent, "aggregates", [])
        assert any(plan.hex() in note and "aggregate" in note for note in manifest.notes)
    exported = {line["plan"] for line in _lines(out)}
    assert exported == {world.plan.hex(), world.workspace.hex()}
    aggregates = [json.loads(x) for x in (out / "aggregates.jsonl").read_text("utf-8").splitlines()]
    silent = [a for a in aggregates if a["plan_id"] == world.silent.hex()]
    phases = [a for a in silent if a["measure"] == "entities" and a["key"] == "phase"]
    assert phases and phases[0]["value"] == 6
    assert sum(a["value"] for a in silent if a["measure"] == "events") == 7
    # Nothing of those plans but their id and counts: no title, no phase id.
    everything = every_text(out)
    assert "Plan silent" not in everything and "Plan withdrawn" not in everything
    report = verify_export(out, full=True)
    assert report.ok, [str(p) for p in report.problems]
    assert any("aggregates.jsonl" in n for n in report.notes)


def test_consent_given_again_exports_the_plan(world: World, tmp_path: Path) -> None:
    db = tmp_path / "vidda.db"
    shutil.copyfile(world.db, db)
    copy = World(tmp_path)
    copy.__dict__.update({**world.__dict__, "db": db})

    async def give_again() -> None:
        log = await EventLog.open(db)
        try:
            state = await log.load_state(world.withdrawn)
            await log.append(
                world.admin, world.withdrawn, [edits.record_consent(state, given=True)]
            )
        finally:
            await log.close()

    asyncio.run(give_again())
    out = _export(copy, tmp_path / "out", FULL)
    assert world.withdrawn.hex() in {line["plan"] for line in _lines(out)}
    assert verify_export(out).ok


def test_aggregates_changed_with_the_manifest_rehashed_are_named(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    """No event gives the counts of a plan without consent: a forger who
    changes aggregates.jsonl and the manifest's hashes makes its other forms
    disagree, and aggregates.jsonl is named among them."""
    out = shutil.copytree(exports[FULL], tmp_path / "t")
    path = out / "aggregates.jsonl"
    path.write_text(path.read_text("utf-8").replace('"value":6', '"value":60', 1), "utf-8")
    _rehash(out, decode_manifest((out / MANIFEST).read_bytes()))
    report = verify_export(out)
    named = {(p.file, p.reason) for p in report.problems}
    assert ("aggregates.jsonl", "changed") in named
    assert ("csv/aggregates.csv", "changed") in named


def test_tampered_aggregates_are_caught(exports: dict[str, Path], tmp_path: Path) -> None:
    out = shutil.copytree(exports[FULL], tmp_path / "t")
    path = out / "aggregates.jsonl"
    path.write_text(path.read_text("utf-8").replace('"value":6', '"value":60', 1), "utf-8")
    report = verify_export(out)
    assert not report.ok
    assert any(p.file == "aggregates.jsonl" and p.reason == "changed" for p in report.problems)


# --- pseudonymised --------------------------------------------------------------------------


def test_pseudonymised_export_has_no_person_name(world: World, exports: dict[str, Path]) -> None:
    full = every_text(exports[FULL])
    assert all(name in full for name in NAMES)  # the source has them
    text = every_text(exports[PSEUDONYMISED])
    assert "[name] var skeptisk" not in text and "var skeptisk" in text
    assert "En daglig leder må med." in text  # a role after the comma is no name
    for name in (*NAMES, "Áile Sárá", "Ola", "Personvern", "Nordmann", "Kari", "Bjørn", "Sárá"):
        assert name not in text, name
        # A first name alone ("sier Kari."), in any case, is a name too.
        assert not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE), name
    for device in (world.admin.public_key, world.other.public_key):
        assert device.hex() not in text
        assert base64.b64encode(device).decode() not in text
    lines = _lines(exports[PSEUDONYMISED])
    assert all(line["signed_bytes"] is None for line in lines)
    persons = {line["person"] for line in lines if line["person"]}
    assert persons and all(p.startswith("P-") for p in persons)
    manifest = decode_manifest((exports[PSEUDONYMISED] / MANIFEST).read_bytes())
    assert manifest.mode == PSEUDONYMISED and manifest.pseudonym_key_id
    assert KEY.hex() not in (exports[PSEUDONYMISED] / MANIFEST).read_text()


def test_personal_actor_and_names_in_text_become_pseudonyms(
    world: World, exports: dict[str, Path]
) -> None:
    import pandas as pd

    actors = pd.read_csv(exports[PSEUDONYMISED] / "csv" / "actor.csv")
    personal = actors[actors["id"] == world.personal_actor.hex()]
    label = personal["name"].iloc[0]
    assert label.startswith("A-")
    assert personal["description"].iloc[0] == f"{label} driver butikken på Tustna"
    history = pd.read_csv(exports[PSEUDONYMISED] / "csv" / "actor_history.csv")
    names = history[history["field"] == "name"]["new_json"].map(json.loads)
    assert label in set(names)  # both of the actor's names: one pseudonym
    notes = pd.read_csv(exports[PSEUDONYMISED] / "csv" / "note.csv")["text"].tolist()
    assert any(t.endswith("tar med kaffe.") and t.startswith("P-") for t in notes)


def test_same_key_same_pseudonyms_other_key_others(exports: dict[str, Path]) -> None:
    a = (exports[PSEUDONYMISED] / "csv" / "members.csv").read_text()
    b = (exports["pseudo_again"] / "csv" / "members.csv").read_text()
    c = (exports["pseudo_other"] / "csv" / "members.csv").read_text()
    assert a == b and a != c
    ma = decode_manifest((exports[PSEUDONYMISED] / MANIFEST).read_bytes())
    mc = decode_manifest((exports["pseudo_other"] / MANIFEST).read_bytes())
    assert ma.pseudonym_key_id != mc.pseudonym_key_id


# --- anonymised -----------------------------------------------------------------------------


def test_anonymised_export_has_no_linking_key(world: World, exports: dict[str, Path]) -> None:
    out = exports[ANONYMISED]
    text = every_text(out)
    for name in (*NAMES, "Ola", "Nordmann", "driver butikken", "Ring henne"):
        assert name not in text, name
    for device in (world.admin.public_key, world.other.public_key):
        assert device.hex() not in text
    source_ids = [line["id"] for line in _lines(exports[FULL])]
    assert not [i for i in source_ids if i in text]
    assert KEY.hex() not in text
    lines = _lines(out)
    assert all(line["signed_bytes"] is None for line in lines)
    assert {line["author_device"] for line in lines} == {"device-1", "device-2"}
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    assert manifest.mode == ANONYMISED and manifest.admins == []
    assert manifest.pseudonym_key_id is None
    heads = [c.head for p in manifest.plans for c in p.chains]
    assert heads and all(h.startswith("event-") for h in heads)
    # The analysis survives: categories, counts, the other actors' names.
    assert "Distriktssenteret" in text and "residents" in text
    # Workspace, plan and entity ids would join a row to the same row of a
    # full export (and a UUIDv7 carries its creation time): labels instead.
    full = every_text(exports[FULL])
    source = set(re.findall(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])", full))
    assert world.personal_actor.hex() in source and world.workspace.hex() in source
    assert not [i for i in source if i in text]
    assert {line["plan"] for line in lines} >= {"workspace", "plan-1"}
    actors = {line["entity_id"] for line in lines if line["entity_kind"] == "actor"}
    assert actors and all(a.startswith("entity-") for a in actors)
    assert manifest.workspace == "workspace"


# --- verify-export ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [PSEUDONYMISED, ANONYMISED])
def test_verify_export_is_honest_about_private_modes(
    world: World, exports: dict[str, Path], tmp_path: Path, mode: str
) -> None:
    out = exports[mode]
    report = verify_export(out)
    assert report.ok, [str(p) for p in report.problems]
    assert report.rederived == []  # nothing is claimed as derived from signatures
    assert any("no signature can be checked" in n for n in report.notes)
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    key = KEY if mode == PSEUDONYMISED else None
    derived, _ = asyncio.run(_derive(world, mode, key))
    again = compare_with(out, derived, manifest)
    assert again.ok and len(again.rederived) == len(manifest.files)

    # A changed cell is caught by its hash; rehashing the manifest hides it
    # from the export's own checks, not from the holder of the log.
    bad = shutil.copytree(out, tmp_path / "bad")
    path = bad / "csv" / "activity.csv"
    path.write_text(path.read_text("utf-8").replace("workshop", "seminar", 1), "utf-8")
    assert any(p.file == "csv/activity.csv" for p in verify_export(bad).problems)
    manifest = decode_manifest((bad / MANIFEST).read_bytes())
    _rehash(bad, manifest)
    assert verify_export(bad).ok
    caught = compare_with(bad, derived, decode_manifest((bad / MANIFEST).read_bytes()))
    assert [p.file for p in caught.problems] == ["csv/activity.csv"]

    # A removed line breaks the chain's shape.
    gap = shutil.copytree(out, tmp_path / "gap")
    lines = (gap / "events.jsonl").read_text("utf-8").splitlines()
    (gap / "events.jsonl").write_text("\n".join(lines[:5] + lines[6:]) + "\n", "utf-8")
    reasons = {p.reason for p in verify_export(gap).problems}
    assert "broken_chain" in reasons


def _rehash(folder: Path, manifest: Any) -> None:
    import msgspec

    from core.research.manifest import content_hash, file_sha256

    files = []
    for f in manifest.files:
        size, digest = file_sha256(folder / f.path)
        files.append(msgspec.structs.replace(f, bytes=size, sha256=digest))
    manifest = msgspec.structs.replace(manifest, files=files)
    manifest.content_sha256 = content_hash(manifest)
    (folder / MANIFEST).write_bytes(encode_manifest(manifest))


def test_private_exports_are_deterministic(exports: dict[str, Path]) -> None:
    from core.research.verify_export import folder_digest

    def data_digest(folder: Path) -> str:
        tmp = folder.parent / (folder.name + "-nomanifest")
        shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns(MANIFEST))
        try:
            return folder_digest(tmp)
        finally:
            shutil.rmtree(tmp)

    assert data_digest(exports[PSEUDONYMISED]) == data_digest(exports["pseudo_again"])


def test_name_parts() -> None:
    from core.research.privacy import name_parts

    assert name_parts("Ivar Torset, næringssjef") == ["Ivar Torset", "Ivar", "Torset"]
    assert name_parts("Anne-Marie O'Neill") == ["Anne-Marie", "Anne", "Marie", "O'Neill", "Neill"]
    assert name_parts("kari nordmann") == ["kari", "nordmann"]
    assert name_parts("Máret Ánne Sara") == ["Máret", "Ánne", "Sara"]
