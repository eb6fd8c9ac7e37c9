"""`vidda verify-export`: prove a research export authentic, complete and intact.

Checks, in order, each problem named by file and line (and event where
there is one):

1. the manifest parses, is of a known format, and its content hash holds;
2. every file the manifest lists is there with its size and SHA-256, and
   no file is there that it does not list;
3. every line of `events.jsonl` parses and its signed bytes pass the
   engine's read-side checks (`open_event`, strict, on the exact bytes:
   nothing is re-encoded);
4. every chain the manifest names is there from seq 1 up to its head, with
   intact links and valid signatures (`core.events.verify.first_problem`,
   the engine's own chain check), and ends at the head the manifest names;
   no chain or event is there that the manifest does not name;
5. when the events are sound and the export was written by this tool and
   projection version: every derived byte is derived again from the signed
   bytes and compared (the rest of each JSON line, every CSV, the codebook,
   Parquet with pyarrow, the SQLite copy). A file that differs is named with
   its first differing line (text) or as a whole (binary).

Step 5 is what makes a consistent edit of a file *and* its manifest hash
show up: the derived files are checked against the signatures, not only
against the manifest. What it cannot prove is that the manifest's heads are
the newest events: compare them with a server's or another replica's heads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from core.events.envelope import Event, EventError, event_id, open_event
from core.events.hlc import to_iso
from core.events.verify import first_problem
from core.research.export import (
    Derived,
    Progress,
    Source,
    _noop,
    derive,
    iso_to_ms,
    projection_versions,
)
from core.research.manifest import (
    FORMAT,
    MANIFEST,
    Manifest,
    content_hash,
    decode_manifest,
    export_notes,
    file_sha256,
    plan_entries,
    tool_version,
)
from core.research.writers import (
    AGGREGATES_JSONL,
    JSONL,
    MissingExtra,
    binary_files,
    read_aggregate_lines,
    text_files,
    write_binary,
    write_files,
)


class ExportProblem(msgspec.Struct, frozen=True):
    file: str
    line: int | None
    event: str | None
    reason: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f" line {self.line}" if self.line is not None else "")
        ev = f" event {self.event[:16]}" if self.event else ""
        return f"{where}{ev}: {self.reason}: {self.message}"


class ExportReport(msgspec.Struct):
    folder: str
    content_sha256: str | None = None
    events: int = 0
    chains: int = 0
    files: int = 0
    rederived: list[str] = msgspec.field(default_factory=list)
    problems: list[ExportProblem] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_export(folder: Path, *, full: bool = False, progress: Progress = _noop) -> ExportReport:
    """Check the export in `folder`; every problem found is in the report."""
    report = ExportReport(str(folder))
    add = report.problems.append
    manifest = _read_manifest(folder, report)
    if manifest is None:
        return report
    listed = {f.path: f for f in manifest.files}
    report.files = len(listed)

    # 2. files: present, unchanged, nothing extra
    changed: set[str] = set()
    for rel, entry in sorted(listed.items()):
        path = folder / rel
        if not _inside(folder, path):
            add(ExportProblem(MANIFEST, None, None, "bad_path", f"lists a path outside: {rel}"))
            continue
        if not path.is_file():
            add(ExportProblem(rel, None, None, "missing_file", "listed in the manifest, not found"))
            continue
        size, digest = file_sha256(path)
        if (size, digest) != (entry.bytes, entry.sha256):
            changed.add(rel)
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and rel not in listed:
            add(ExportProblem(rel, None, None, "unlisted_file", "not listed in the manifest"))
    if JSONL not in listed:
        add(ExportProblem(MANIFEST, None, None, "no_events", f"{JSONL} is not listed"))
        return report
    for note in manifest.notes:
        report.notes.append(f"manifest: {note}")
    if manifest.mode != "full":
        _check_redacted(folder, manifest, changed, report)
        return report
    aggregates: list[tuple[Any, ...]] = []
    if AGGREGATES_JSONL in listed:
        try:
            aggregates = read_aggregate_lines((folder / AGGREGATES_JSONL).read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError, KeyError) as exc:
            add(ExportProblem(AGGREGATES_JSONL, None, None, "bad_line", str(exc)))
        report.notes.append(
            f"{AGGREGATES_JSONL}: counts of plans exported without research consent; their "
            "events are not in the export, so these counts are checked against the manifest's "
            "hash only"
        )
        _name_changed(changed & {AGGREGATES_JSONL}, report)

    # 3. the signed events (a problem with another file does not make them unsound)
    before = len(report.problems)
    loaded = _read_events(folder / JSONL, manifest, report, progress)
    if loaded is None:
        return report
    events, lines, received = loaded
    report.events = len(events)
    events_ok = len(report.problems) == before

    # 4. chains against the manifest's heads
    if not _check_chains(manifest, events, lines, report, full=full):
        events_ok = False

    # 5. derive again and compare
    same_tool = (
        manifest.tool.get("version") == tool_version()
        and manifest.projection == projection_versions()
    )
    if not events_ok:
        report.notes.append("derived files were not compared: the events themselves are not sound")
        _name_changed(changed, report)
    elif not same_tool:
        report.notes.append(
            f"exported by vidda {manifest.tool.get('version')} ({manifest.projection}); "
            f"this is {tool_version()} ({projection_versions()}): derived files are checked "
            "against the manifest's hashes only"
        )
        _name_changed(changed, report)
    else:
        _rederive(folder, manifest, events, received, aggregates, changed, report, progress)
    return report


# The other forms of aggregates.jsonl's rows (export.sqlite holds every table).
AGGREGATE_FORMS = ("csv/aggregates.csv", "parquet/aggregates.parquet")


def _blame_aggregates(aggregates: list[tuple[Any, ...]], report: ExportReport) -> None:
    """The counts of plans without consent come from aggregates.jsonl (no
    events give them), so a change there shows up as its other forms
    differing: name aggregates.jsonl beside them, as the file to doubt."""
    differ = sorted(
        {p.file for p in report.problems if p.reason == "changed"} & set(AGGREGATE_FORMS)
    )
    if aggregates and differ:
        report.problems.append(
            ExportProblem(
                AGGREGATES_JSONL,
                None,
                None,
                "changed",
                f"its counts disagree with {', '.join(differ)}: one side was changed "
                "(counts of plans without consent are not derived from events)",
            )
        )


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _read_manifest(folder: Path, report: ExportReport) -> Manifest | None:
    add = report.problems.append
    path = folder / MANIFEST
    if not folder.is_dir():
        add(ExportProblem(str(folder), None, None, "not_found", "no such folder"))
        return None
    try:
        manifest = decode_manifest(path.read_bytes())
    except FileNotFoundError:
        add(
            ExportProblem(MANIFEST, None, None, "missing_file", "no manifest (interrupted export?)")
        )
        return None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        add(ExportProblem(MANIFEST, None, None, "bad_manifest", str(exc)))
        return None
    report.content_sha256 = manifest.content_sha256
    if manifest.format != FORMAT:
        add(
            ExportProblem(MANIFEST, None, None, "bad_format", f"unknown format {manifest.format!r}")
        )
        return None
    if content_hash(manifest) != manifest.content_sha256:
        add(
            ExportProblem(
                MANIFEST,
                None,
                None,
                "manifest_changed",
                "content_sha256 does not match its content",
            )
        )
    return manifest


_line_decoder = msgspec.json.Decoder(dict[str, Any])


def _read_events(
    path: Path, manifest: Manifest, report: ExportReport, progress: Progress
) -> tuple[list[Event], dict[bytes, int], dict[tuple[bytes, bytes, int], int]] | None:
    add = report.problems.append
    try:
        data = path.read_bytes()
    except OSError:
        return None  # reported as a missing file
    workspace = bytes.fromhex(manifest.workspace)
    events: list[Event] = []
    lines: dict[bytes, int] = {}
    received: dict[tuple[bytes, bytes, int], int] = {}
    chunks = data.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    elif chunks:
        add(ExportProblem(JSONL, len(chunks), None, "truncated", "the last line has no line end"))
    for n, text in enumerate(chunks, start=1):
        if n % 20_000 == 0:
            progress("verify events", n, len(chunks))
        try:
            obj = _line_decoder.decode(text)
            raw = base64.b64decode(obj["signed_bytes"], validate=True)
        except (msgspec.DecodeError, KeyError, TypeError, binascii.Error, ValueError) as exc:
            add(ExportProblem(JSONL, n, None, "bad_line", f"not an event line ({exc})"))
            continue
        try:
            ev = open_event(raw, verify=False, strict=True)
        except EventError as exc:
            add(ExportProblem(JSONL, n, event_id(raw).hex(), exc.reason, str(exc)))
            continue
        if ev.env.workspace != workspace:
            add(
                ExportProblem(
                    JSONL, n, ev.id.hex(), "wrong_workspace", "event of another workspace"
                )
            )
            continue
        if ev.id in lines:
            add(
                ExportProblem(
                    JSONL, n, ev.id.hex(), "duplicate", f"same event as line {lines[ev.id]}"
                )
            )
            continue
        lines[ev.id] = n
        events.append(ev)
        when = obj.get("server_received_time")
        if isinstance(when, str):
            try:
                received[(ev.env.plan, ev.env.author, ev.env.seq)] = iso_to_ms(when)
            except ValueError:
                add(ExportProblem(JSONL, n, ev.id.hex(), "bad_line", "bad server_received_time"))
    progress("verify events", len(chunks), len(chunks))
    return events, lines, received


def _check_chains(
    manifest: Manifest,
    events: list[Event],
    lines: dict[bytes, int],
    report: ExportReport,
    *,
    full: bool,
) -> bool:
    add = report.problems.append
    found: dict[tuple[bytes, bytes], list[Event]] = defaultdict(list)
    for ev in events:
        found[(ev.env.plan, ev.env.author)].append(ev)
    ok = True
    named: set[tuple[bytes, bytes]] = set()
    for plan_entry in manifest.plans:
        plan = bytes.fromhex(plan_entry.plan)
        for c in plan_entry.chains:
            key = (plan, bytes.fromhex(c.device))
            named.add(key)
            report.chains += 1
            chain = sorted(found.get(key, []), key=lambda e: e.env.seq)
            label = f"chain plan {plan_entry.plan[:8]} device {c.device[:8]}"
            if not chain:
                add(
                    ExportProblem(
                        JSONL, None, c.head, "missing_chain", f"{label}: none of its {c.seq} events"
                    )
                )
                ok = False
                continue
            problem = first_problem(chain, full=full)
            if problem is not None:
                eid = problem.event_id
                add(
                    ExportProblem(
                        JSONL,
                        lines.get(eid) if eid else None,
                        eid.hex() if eid else None,
                        problem.reason,
                        f"{label} seq {problem.seq}: {problem.message}",
                    )
                )
                ok = False
                continue
            last = chain[-1]
            if last.env.seq < c.seq:
                add(
                    ExportProblem(
                        JSONL,
                        None,
                        c.head,
                        "missing_events",
                        f"{label}: ends at seq {last.env.seq}, the manifest's head is seq {c.seq}",
                    )
                )
                ok = False
            elif last.env.seq > c.seq or last.id.hex() != c.head:
                line = lines.get(last.id)
                add(
                    ExportProblem(
                        JSONL,
                        line,
                        last.id.hex(),
                        "head_mismatch",
                        f"{label}: head is seq {last.env.seq}, the manifest names seq {c.seq} "
                        f"({c.head[:16]})",
                    )
                )
                ok = False
    for key, chain in sorted(found.items()):
        if key not in named:
            first = min(chain, key=lambda e: e.env.seq)
            add(
                ExportProblem(
                    JSONL,
                    lines.get(first.id),
                    first.id.hex(),
                    "unlisted_chain",
                    f"chain plan {key[0].hex()[:8]} device {key[1].hex()[:8]} not in the manifest",
                )
            )
            ok = False
    return ok


def _name_changed(changed: set[str], report: ExportReport) -> None:
    for rel in sorted(changed):
        report.problems.append(
            ExportProblem(rel, None, None, "changed", "SHA-256 differs from the manifest")
        )


def _rederive(
    folder: Path,
    manifest: Manifest,
    events: list[Event],
    received: dict[tuple[bytes, bytes, int], int],
    aggregates: list[tuple[Any, ...]],
    changed: set[str],
    report: ExportReport,
    progress: Progress,
) -> None:
    add = report.problems.append
    derived = derive(
        Source(
            workspace=bytes.fromhex(manifest.workspace),
            admins=[bytes.fromhex(a) for a in manifest.admins],
            raws=[e.raw for e in events],
            received=received,
            aggregates=aggregates,
        ),
        progress,
    )
    formats = tuple(manifest.formats)
    listed = {f.path for f in manifest.files}
    expected_texts = text_files(derived, formats)
    expected = set(expected_texts) | set(binary_files(formats))
    for rel in sorted(expected - listed):
        add(ExportProblem(MANIFEST, None, None, "missing_file", f"does not list {rel}"))
    for rel, produce in expected_texts.items():
        path = folder / rel
        if rel not in listed or not path.is_file() or rel == AGGREGATES_JSONL:
            continue
        where = _first_difference(path, produce())
        if where is None:
            report.rederived.append(rel)
            if rel in changed:  # same bytes as derived, so the manifest's hash is wrong
                add(ExportProblem(MANIFEST, None, None, "changed", f"wrong SHA-256 for {rel}"))
            continue
        line, why = where
        event = None
        if rel == JSONL and 0 < line <= len(derived.records):
            event = derived.records[line - 1].event.id.hex()
        add(ExportProblem(rel, line, event, "changed", why))
    binaries = [r for r in binary_files(formats) if r in listed and (folder / r).is_file()]
    if not binaries:
        return
    with tempfile.TemporaryDirectory(prefix="vidda-verify-") as tmp:
        try:
            write_binary(derived, Path(tmp), formats)
        except MissingExtra:
            report.notes.append(
                "pyarrow is not installed: Parquet files are checked by hash only "
                "(pip install 'vidda[research]')"
            )
            _name_changed(changed & {r for r in binaries if r.endswith(".parquet")}, report)
            binaries = [r for r in binaries if not r.endswith(".parquet")]
        for rel in binaries:
            mine = Path(tmp) / rel
            if not mine.exists():
                continue
            if file_sha256(mine) == file_sha256(folder / rel):
                report.rederived.append(rel)
                if rel in changed:
                    add(ExportProblem(MANIFEST, None, None, "changed", f"wrong SHA-256 for {rel}"))
            else:
                add(
                    ExportProblem(
                        rel, None, None, "changed", "differs from what the signed events give"
                    )
                )
    _blame_aggregates(aggregates, report)
    counts = {
        "events": len(derived.records),
        "chains": len(derived.heads),
        **{f"rows.{n}": len(r) for n, r in derived.tables.items()},
    }
    # The manifest's own claims about the plans (heads, consent, what was
    # exported), its cut-off and its notes must be what the events give too:
    # a consistent edit of the manifest and its hashes is no way around them.
    # (Plans exported as counts only have no events here: their entries and
    # the notes about them are checked by the manifest's hash alone.)
    last = max((r.event.env.hlc for r in derived.records), default=None)
    counted_only = any(p.content == "aggregates" for p in manifest.plans)
    claims: dict[str, tuple[Any, Any]] = {
        "plans": (
            [p for p in manifest.plans if p.content == "events"],
            [p for p in plan_entries(derived) if p.content == "events"],
        ),
        "cutoff": (
            (manifest.cutoff.events, manifest.cutoff.last_device_time),
            (len(derived.records), to_iso(last) if last is not None else None),
        ),
    }
    if not counted_only:
        claims["notes"] = (manifest.notes, export_notes(derived))
    for name, (stated, given) in claims.items():
        if stated != given:
            add(
                ExportProblem(
                    MANIFEST,
                    None,
                    None,
                    "wrong_manifest",
                    f"{name} differs from what the signed events give",
                )
            )
    for key, value in sorted(counts.items()):
        if manifest.counts.get(key) != value:
            add(
                ExportProblem(
                    MANIFEST,
                    None,
                    None,
                    "wrong_count",
                    f"counts.{key} is {manifest.counts.get(key)}, the events give {value}",
                )
            )


def _check_redacted(
    folder: Path, manifest: Manifest, changed: set[str], report: ExportReport
) -> None:
    """A pseudonymised or anonymised export has no signed bytes: check every
    file against the manifest, every line's shape, and every chain's shape
    (seq 1 to the head, each `prev` the previous event's id or label)."""
    add = report.problems.append
    report.notes.append(
        f"mode {manifest.mode}: no signed bytes, so no signature can be checked; the files "
        "are checked against the manifest's hashes and the chains' shape only. Whoever "
        "holds the log proves the export by deriving it again: "
        "vidda verify-export DIR --against-home"
    )
    _name_changed(changed, report)
    try:
        data = (folder / JSONL).read_bytes()
    except OSError:
        return
    chains: dict[tuple[str, str], list[tuple[int, str, str, int]]] = defaultdict(list)
    for n, text in enumerate(data.splitlines(), start=1):
        try:
            obj = _line_decoder.decode(text)
            key = (str(obj["plan"]), str(obj["author_device"]))
            chains[key].append((int(obj["seq"]), str(obj["id"]), str(obj["prev"]), n))
            if obj["signed_bytes"] is not None:
                add(ExportProblem(JSONL, n, None, "not_redacted", "carries signed bytes"))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            add(ExportProblem(JSONL, n, None, "bad_line", f"not an event line ({exc})"))
    report.events = sum(len(c) for c in chains.values())
    first_prev = "event-0" if manifest.mode == "anonymised" else bytes(32).hex()
    named = set()
    for plan_entry in manifest.plans:
        for c in plan_entry.chains:
            key = (plan_entry.plan, c.device)
            named.add(key)
            report.chains += 1
            chain = sorted(chains.get(key, []))
            label = f"chain plan {plan_entry.plan[:8]} device {c.device[:12]}"
            prev = first_prev
            for want, (seq, eid, got_prev, line) in enumerate(chain, start=1):
                if seq != want or got_prev != prev:
                    why = f"seq {seq}: " + ("a gap" if seq != want else "prev does not link")
                    add(ExportProblem(JSONL, line, None, "broken_chain", f"{label} {why}"))
                    break
                prev = eid
            else:
                if not chain or chain[-1][0] != c.seq or chain[-1][1] != c.head:
                    got = chain[-1][0] if chain else 0
                    add(
                        ExportProblem(
                            JSONL,
                            None,
                            None,
                            "missing_events" if got < c.seq else "head_mismatch",
                            f"{label}: ends at seq {got}, the manifest's head is seq {c.seq}",
                        )
                    )
    for key in sorted(set(chains) - named):
        add(ExportProblem(JSONL, None, None, "unlisted_chain", f"chain {key} not in the manifest"))


def compare_with(folder: Path, derived: Derived, manifest: Manifest) -> ExportReport:
    """Write `derived` as `manifest` says it was written (formats, mode) into
    a scratch folder and compare every file byte for byte: how the holder of
    the log proves a pseudonymised or anonymised export (or any export) was
    derived from its events up to the manifest's cut-off."""
    report = ExportReport(str(folder), manifest.content_sha256)
    listed = {f.path: f for f in manifest.files}
    report.files = len(listed)
    report.events = len(derived.records)
    report.chains = len(derived.heads)
    with tempfile.TemporaryDirectory(prefix="vidda-against-") as tmp:
        mine = write_files(derived, Path(tmp), tuple(manifest.formats))
        for rel in sorted(set(mine) | set(listed)):
            if rel not in listed:
                report.problems.append(
                    ExportProblem(MANIFEST, None, None, "missing_file", f"does not list {rel}")
                )
            elif rel not in mine:
                report.problems.append(
                    ExportProblem(rel, None, None, "unlisted_file", "the log gives no such file")
                )
            elif not (folder / rel).is_file():
                report.problems.append(
                    ExportProblem(rel, None, None, "missing_file", "listed, not found")
                )
            elif file_sha256(Path(tmp) / rel) == file_sha256(folder / rel):
                report.rederived.append(rel)
            else:
                report.problems.append(
                    ExportProblem(rel, None, None, "changed", "differs from what the log gives")
                )
    return report


def _first_difference(path: Path, expected: Iterator[bytes]) -> tuple[int, str] | None:
    """(line, why) of the first byte where the file and the expected bytes
    differ, or None if they are equal. Streams both."""
    line = 1
    with open(path, "rb") as fh:
        for chunk in expected:
            got = fh.read(len(chunk))
            if got != chunk:
                i = next(
                    (k for k, (a, b) in enumerate(zip(got, chunk, strict=False)) if a != b),
                    len(got),
                )
                line += chunk.count(b"\n", 0, i)
                if i >= len(got):
                    return line, "the file ends early (lines missing)"
                return line, "differs from what the signed events give"
            line += chunk.count(b"\n")
        if fh.read(1):
            return line, "extra data after the last expected line"
    return None


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes (tests, benchmarks)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()
