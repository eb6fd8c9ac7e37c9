"""Research exports: a round trip verifies; every changed byte, removed line
or removed file is caught and named; the output is deterministic; DuckDB and
pandas read every format as it is, with the right row counts and types.

Two workspaces: a small one (the Aure demo plan, a membership log with two
people, a second device's edit, a conflict, a removal and a
server-received time), and a generated one (the benchmark
workload: 10k events by 4 devices; `VIDDA_EXPORT_EVENTS` for more).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.bodies import MemberAdded
from core.events.ids import new_uuid7
from core.events.schema import ENTITY_FIELDS
from core.identity.keyfile import DeviceKey
from core.research.codebook import FIELD_MEANINGS, TABLES, codebook_rows
from core.research.export import derive, iso_to_ms, ms_to_iso
from core.research.manifest import MANIFEST, decode_manifest
from core.research.snapshot import read_snapshot
from core.research.verify_export import ExportReport, folder_digest, verify_export
from core.research.writers import FORMATS, ExportError, export_to
from core.store.event_log import EventLog

ALL = FORMATS
# The size: a generated 100k-event workspace read back by DuckDB and
# pandas (~1 min: generating and signing dominate). VIDDA_EXPORT_EVENTS
# shrinks it for a quick local run.
BIG = int(os.environ.get("VIDDA_EXPORT_EVENTS", "100000"))


class Small:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "vidda.db"
        self.workspace = new_uuid7()
        self.admin = DeviceKey.from_seed(bytes(32))
        self.other = DeviceKey.from_seed(bytes([1]) * 32)
        self.plan = b""
        self.removed = b""


async def _build_small(root: Path) -> Small:
    s = Small(root)
    log = await EventLog.open(s.db, workspace=s.workspace)
    try:
        await log.append(
            s.admin,
            s.workspace,
            [
                MemberAdded(device=s.admin.public_key, name="Kari Nordmann", role="owner"),
                MemberAdded(device=s.other.public_key, name="Bjørn Ávži", role="editor"),
            ],
        )
        s.plan, bodies = aure_plan()
        await log.append(s.admin, s.plan, bodies)
        state = await log.load_state(s.plan)
        # Both devices rewrite the desired result from the same heads: a conflict.
        await log.append(
            s.admin, s.plan, edits.set_fields(state, "plan", s.plan, {"desired_result": "A"})
        )
        await log.append(
            s.other, s.plan, edits.set_fields(state, "plan", s.plan, {"desired_result": "Bø"})
        )
        state = await log.load_state(s.plan)
        actor = next(eid for (k, eid) in state.entities if k == "actor")
        s.removed = actor
        await log.append(s.other, s.plan, [edits.remove_entity(state, "actor", actor)])
        # The server acknowledged the admin's first 5 plan events at this time.
        await log.record(
            [
                (
                    "INSERT INTO sync_acks(server_id, plan_id, device_key, first_seq, last_seq, "
                    "received_ms) VALUES (?,?,?,?,?,?)",
                    (b"s" * 16, s.plan, s.admin.public_key, 1, 5, 1_700_000_000_123),
                )
            ]
        )
    finally:
        await log.close()
    return s


async def _export(db: Path, out: Path, formats: tuple[str, ...], admins: list[bytes]) -> None:
    log = await EventLog.open(db)
    try:
        plans = [p for p, _ in await log.plans()]
        snap = await read_snapshot(log, plans, admins)
    finally:
        await log.close()
    export_to(out, derive(snap), formats=formats, command=["test"], cutoff_rx=snap.cutoff_rx)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Small, Path]:
    root = tmp_path_factory.mktemp("small")
    s = asyncio.run(_build_small(root))
    out = root / "export"
    asyncio.run(_export(s.db, out, ALL, [s.admin.public_key]))
    return s, out


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("big")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        from workload import plan_log, with_consent  # type: ignore[import-not-found]

        work = plan_log(BIG, 4, out=root)
        consented = root / "consented"
        consented.mkdir()
        db = with_consent(work, consented)
    finally:
        sys.path.pop(0)
    out = root / "export"
    asyncio.run(_export(db, out, ALL, []))
    return out, BIG + 1


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _names(report: ExportReport) -> list[str]:
    return [str(p) for p in report.problems]


# --- round trip ---------------------------------------------------------------------------


def test_round_trip_verifies_and_rederives_every_file(small: tuple[Small, Path]) -> None:
    s, out = small
    report = verify_export(out, full=True)
    assert report.ok, _names(report)
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    assert sorted(report.rederived) == sorted(f.path for f in manifest.files)
    assert report.events == manifest.counts["events"] > 40
    heads = {(p.plan, c.device): c.seq for p in manifest.plans for c in p.chains}
    assert heads[(s.plan.hex(), s.other.public_key.hex())] == 2
    assert any(p.membership for p in manifest.plans)


def test_jsonl_carries_signed_bytes_people_diffs_and_server_time(small: tuple[Small, Path]) -> None:
    s, out = small
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text("utf-8").splitlines()]
    by_type: dict[str, list[dict]] = {}
    for obj in lines:
        by_type.setdefault(obj["type"], []).append(obj)
        raw = base64.b64decode(obj["signed_bytes"])
        assert len(raw) > 64
    bjorn = [o for o in lines if o["author_device"] == s.other.public_key.hex()]
    assert {o["person"] for o in bjorn} == {"Bjørn Ávži"}
    assert {o["role"] for o in bjorn} == {"editor"}
    other = s.other.public_key.hex()
    revised = next(o for o in by_type["DesiredResultRevised"] if o["author_device"] == other)
    (change,) = revised["changes"]
    assert change["field"] == "desired_result" and change["new"] == "Bø"
    assert change["old"] and change["old"][0].startswith("Det er skapt")
    timed = [o for o in lines if o["server_received_time"]]
    assert len(timed) == 5
    assert {o["server_received_time"] for o in timed} == {ms_to_iso(1_700_000_000_123)}
    assert iso_to_ms(ms_to_iso(1_700_000_000_123)) == 1_700_000_000_123
    removed = by_type["EntityRemoved"][0]
    assert removed["changes"][0]["note"] == "removed"
    assert removed["entity_id"] == s.removed.hex()


def test_export_is_byte_identical_when_repeated(small: tuple[Small, Path], tmp_path: Path) -> None:
    s, out = small
    again = tmp_path / "again"
    asyncio.run(_export(s.db, again, ALL, [s.admin.public_key]))
    first = decode_manifest((out / MANIFEST).read_bytes())
    second = decode_manifest((again / MANIFEST).read_bytes())
    assert [(f.path, f.sha256) for f in first.files] == [(f.path, f.sha256) for f in second.files]
    assert first.content_sha256 == second.content_sha256
    (again / MANIFEST).unlink()
    shutil.copy(out / MANIFEST, again / MANIFEST)
    assert folder_digest(out) == folder_digest(again)


def test_export_refuses_a_folder_with_files(small: tuple[Small, Path], tmp_path: Path) -> None:
    s, _ = small
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ExportError, match="not an empty folder"):
        asyncio.run(_export(s.db, tmp_path / "busy", ("jsonl",), []))


# --- tampering: caught and named ----------------------------------------------------------


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_line(path: Path, line: int, edit: Callable[[str], str]) -> None:
    lines = path.read_text("utf-8").split("\n")
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines), "utf-8")


def _drop_line(path: Path, line: int) -> None:
    _edit_line(path, line, lambda _: "\0")
    path.write_text(path.read_text("utf-8").replace("\0\n", ""), "utf-8")


def _rehash(folder: Path) -> None:
    """Recompute the manifest's file hashes and content hash, as a forger would."""
    from core.research.manifest import content_hash, encode_manifest, file_sha256

    manifest = decode_manifest((folder / MANIFEST).read_bytes())
    manifest.files = [
        msgspec.structs.replace(
            f, bytes=file_sha256(folder / f.path)[0], sha256=file_sha256(folder / f.path)[1]
        )
        for f in manifest.files
        if (folder / f.path).exists()
    ]
    manifest.content_sha256 = content_hash(manifest)
    (folder / MANIFEST).write_bytes(encode_manifest(manifest))


def _last_line(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def _signed_bytes_edit(text: str) -> str:
    obj = json.loads(text)
    raw = bytearray(base64.b64decode(obj["signed_bytes"]))
    raw[-70] ^= 0x01  # inside the body, under the signature
    obj["signed_bytes"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (tamper, file named, text the problem must contain)
    "jsonl person changed": (
        lambda d: _edit_line(d / "events.jsonl", 9, lambda t: t.replace('"Kari', '"Kirsten', 1)),
        "events.jsonl line 9",
        "changed",
    ),
    "jsonl signed bytes changed": (
        lambda d: _edit_line(d / "events.jsonl", 12, _signed_bytes_edit),
        "events.jsonl line 12",
        "bad_signature",
    ),
    "jsonl line removed": (
        lambda d: _drop_line(d / "events.jsonl", 20),
        "events.jsonl line 20",
        "gap",
    ),
    "jsonl last line of a chain removed": (
        lambda d: _drop_line(
            d / "events.jsonl", len((d / "events.jsonl").read_bytes().splitlines())
        ),
        "events.jsonl",
        "missing_events",
    ),
    "csv byte changed": (
        lambda d: _edit_line(d / "csv/activity.csv", 3, lambda t: t.replace(",", ";", 1)),
        "csv/activity.csv line 3",
        "changed",
    ),
    "csv line removed": (
        lambda d: _drop_line(d / "csv/events.csv", 4),
        "csv/events.csv line 4",
        "changed",
    ),
    "codebook changed": (
        lambda d: _edit_line(d / "codebook.csv", 2, lambda t: t + " "),
        "codebook.csv line 2",
        "changed",
    ),
    "parquet byte changed": (
        lambda d: _flip_byte(d / "parquet/actor.parquet", 200),
        "parquet/actor.parquet",
        "changed",
    ),
    "sqlite byte changed": (
        lambda d: _flip_byte(d / "export.sqlite", 5000),
        "export.sqlite",
        "changed",
    ),
    "file removed": (
        lambda d: (d / "csv/actor_history.csv").unlink(),
        "csv/actor_history.csv",
        "missing_file",
    ),
    "events file removed": (
        lambda d: (d / "events.jsonl").unlink(),
        "events.jsonl",
        "missing_file",
    ),
    "file added": (
        lambda d: (d / "csv" / "extra.csv").write_text("a\n"),
        "csv/extra.csv",
        "unlisted_file",
    ),
    "manifest head changed": (
        lambda d: (d / MANIFEST).write_text(
            (d / MANIFEST).read_text().replace('"seq": 2,', '"seq": 1,', 1)
        ),
        "manifest.json",
        "manifest_changed",
    ),
    "manifest removed": (
        lambda d: (d / MANIFEST).unlink(),
        "manifest.json",
        "missing_file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampering_is_caught_and_named(
    case: str, small: tuple[Small, Path], tmp_path: Path
) -> None:
    _, out = small
    tamper, where, what = CASES[case]
    folder = _copy(out, tmp_path / "x")
    tamper(folder)
    report = verify_export(folder)
    assert not report.ok
    named = _names(report)
    assert any(n.startswith(where) and what in n for n in named), named


def test_a_missing_file_does_not_stop_the_others_being_derived_again(
    small: tuple[Small, Path], tmp_path: Path
) -> None:
    """One file gone is that file's problem: the events are still sound,
    and every other file is still derived again from them and compared."""
    _, out = small
    folder = _copy(out, tmp_path / "x")
    (folder / "parquet" / "phase.parquet").unlink()
    _flip_byte(folder / "csv" / "events.csv", 300)
    report = verify_export(folder)
    assert {(p.file, p.reason) for p in report.problems} >= {
        ("parquet/phase.parquet", "missing_file"),
        ("csv/events.csv", "changed"),
    }
    assert not any("not sound" in n for n in report.notes), report.notes
    assert "parquet/actor.parquet" in report.rederived and "events.jsonl" in report.rederived


@pytest.mark.parametrize(
    "case",
    ["jsonl person changed", "csv byte changed", "parquet byte changed", "jsonl line removed"],
)
def test_tampering_with_the_manifest_rehashed_is_still_caught(
    case: str, small: tuple[Small, Path], tmp_path: Path
) -> None:
    """A forger who also fixes the manifest's hashes is caught by deriving the
    files again from the signed events."""
    _, out = small
    tamper, where, _ = CASES[case]
    folder = _copy(out, tmp_path / "x")
    tamper(folder)
    _rehash(folder)
    report = verify_export(folder)
    assert not report.ok
    assert any(n.startswith(where) for n in _names(report)), _names(report)


# --- the codebook -------------------------------------------------------------------------


def test_codebook_covers_every_column_in_both_languages(small: tuple[Small, Path]) -> None:
    for kind, fields in ENTITY_FIELDS.items():
        for field in fields:
            assert (kind, field) in FIELD_MEANINGS
    rows = codebook_rows()
    for table in TABLES:
        documented = [r["column"] for r in rows if r["table"] == table.name]
        assert documented == table.names
    assert all(r["meaning_nb"] and r["meaning_en"] for r in rows)
    _, out = small
    header = (out / "csv" / "activity.csv").read_text("utf-8").splitlines()[0].split(",")
    assert header == next(t for t in TABLES if t.name == "activity").names


# --- reading back: DuckDB and pandas ------------------------------------------------------


def test_duckdb_and_pandas_read_the_small_export(small: tuple[Small, Path]) -> None:
    import duckdb
    import pandas as pd

    _, out = small
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    n = manifest.counts["events"]
    con = duckdb.connect()
    for source in (
        f"read_json_auto('{out}/events.jsonl')",
        f"'{out}/parquet/events.parquet'",
        f"read_csv('{out}/csv/events.csv')",
    ):
        assert con.execute(f"SELECT count(*) FROM {source}").fetchone() == (n,), source
    people = con.execute(
        f"SELECT person, count(*) FROM '{out}/parquet/events.parquet' "
        "WHERE person IS NOT NULL GROUP BY person ORDER BY person"
    ).fetchall()
    assert [p for p, _ in people] == ["Bjørn Ávži", "Kari Nordmann"]
    actors = pd.read_parquet(out / "parquet" / "actor.parquet")
    assert actors["removed"].sum() == 1
    assert str(actors["influence"].dtype) in ("Int64", "float64", "int64")
    plan = pd.read_csv(out / "csv" / "plan.csv")
    assert plan.loc[0, "conflicts"] == '["desired_result"]'
    assert plan.loc[0, "municipality"] == "Aure"
    import sqlite3

    with sqlite3.connect(out / "export.sqlite") as conn:
        frame = pd.read_sql("SELECT * FROM events", conn)
    assert len(frame) == n and frame["seq"].dtype == "int64"
    assert bytes(frame.loc[0, "signed_bytes"])[:1] == b"\x99"  # the msgpack array header


def test_duckdb_and_pandas_read_a_generated_workspace(big: tuple[Path, int]) -> None:
    import duckdb
    import pandas as pd

    out, n = big  # verify_export's round trip is tested on the small export
    manifest = decode_manifest((out / MANIFEST).read_bytes())
    assert manifest.counts["events"] == n
    con = duckdb.connect()
    for table in ("events", "activity", "activity_history", "actor", "chains"):
        expected = manifest.counts[f"rows.{table}"]
        for source in (f"'{out}/parquet/{table}.parquet'", f"read_csv('{out}/csv/{table}.csv')"):
            assert con.execute(f"SELECT count(*) FROM {source}").fetchone() == (expected,), source
        frame = pd.read_parquet(out / "parquet" / f"{table}.parquet")
        assert len(frame) == expected
        assert len(pd.read_csv(out / "csv" / f"{table}.csv")) == expected
    types = {
        r[0]: r[1]
        for r in con.execute(f"DESCRIBE SELECT * FROM '{out}/parquet/events.parquet'").fetchall()
    }
    assert types["seq"] == "BIGINT" and types["hlc"] == "BIGINT"
    assert types["signed_bytes"] == "BLOB" and types["type"] == "VARCHAR"
    csv_types = {
        r[0]: r[1]
        for r in con.execute(f"DESCRIBE SELECT * FROM read_csv('{out}/csv/events.csv')").fetchall()
    }
    assert csv_types["seq"] == "BIGINT" and csv_types["hlc"] == "BIGINT"
    actors = pd.read_parquet(out / "parquet" / "actor.parquet")
    assert actors["removed"].dtype == bool
    per_device = con.execute(
        f"SELECT author_device, count(*) FROM '{out}/parquet/events.parquet' GROUP BY 1"
    ).fetchall()
    assert sorted(c for _, c in per_device) == sorted(
        c.seq for p in manifest.plans for c in p.chains
    )
    joined = con.execute(
        f"""SELECT count(*) FROM '{out}/parquet/activity_history.parquet' h
            JOIN '{out}/parquet/events.parquet' e USING (event_id)"""
    ).fetchone()
    assert joined == (manifest.counts["rows.activity_history"],)


@pytest.mark.parametrize(
    "claim",
    ["consent", "plan_events", "head", "cutoff_events", "cutoff_time", "notes"],
)
def test_the_manifests_own_claims_are_checked_against_the_events(
    claim: str, small: tuple[Small, Path], tmp_path: Path
) -> None:
    """Consent, event counts, heads, the cut-off and the notes are derived
    from the signed events: an edit of them, with every hash recomputed, is
    caught."""
    from core.research.manifest import encode_manifest

    _, out = small
    folder = _copy(out, tmp_path / "x")
    manifest = decode_manifest((folder / MANIFEST).read_bytes())
    at, plan = next((i, p) for i, p in enumerate(manifest.plans) if not p.membership)
    edit = msgspec.structs.replace
    if claim == "consent":
        plan = edit(plan, consent="withdrawn" if plan.consent != "withdrawn" else "given")
    elif claim == "plan_events":
        plan = edit(plan, events=plan.events + 5)
    elif claim == "head":
        plan = edit(plan, chains=[edit(plan.chains[0], head="00" * 32), *plan.chains[1:]])
    elif claim == "cutoff_events":
        manifest.cutoff = edit(manifest.cutoff, events=1)
    elif claim == "cutoff_time":
        manifest.cutoff = edit(manifest.cutoff, last_device_time="2001-01-01")
    else:
        manifest.notes = [*manifest.notes, "every plan was exported in full"]
    manifest.plans[at] = plan
    (folder / MANIFEST).write_bytes(encode_manifest(manifest))
    _rehash(folder)
    report = verify_export(folder)
    assert not report.ok
    # (A wrong head is also named at the chain's last event.)
    where = "events.jsonl" if claim == "head" else MANIFEST
    assert any(n.startswith(where) for n in _names(report)), _names(report)
