"""The manifest of a research export: what it is, where it was cut, the head
of every chain in it, counts, and the SHA-256 of every file.

`content_sha256` is the SHA-256 of the manifest's canonical JSON with
`exported_at` and `content_sha256` itself blanked: two exports of the same
events by the same tool version (and the same command) have the same
content hash, whenever they ran. It is the export's fingerprint to cite.
The heads are what completeness is proven against: a reader can compare
them with a server's or another replica's heads.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import msgspec

from core.events.hlc import to_iso
from core.research.export import Derived, counted_only, projection_versions

MANIFEST = "manifest.json"
FORMAT = "vidda-research-export/1"


class FileEntry(msgspec.Struct, frozen=True):
    path: str
    bytes: int
    sha256: str
    rows: int | None = None


class ChainEntry(msgspec.Struct, frozen=True):
    device: str
    seq: int  # the head's seq: the chain is exported from seq 1 to here
    head: str  # the head's event id


class PlanEntry(msgspec.Struct, frozen=True):
    plan: str
    membership: bool  # the workspace's membership log (plan id = workspace id)
    events: int
    chains: list[ChainEntry]
    consent: str | None = None  # given | withdrawn | none (plans; None: the membership log)
    content: str = "events"  # events | aggregates (no consent: counts only, no events)


class Cutoff(msgspec.Struct, frozen=True):
    receive_position: int  # this replica's receive order (rx) the export reads up to
    events: int
    last_device_time: str | None
    # Up to which position (rowid) of this replica's server acknowledgements
    # (the source of server-received times) the export read: acks that
    # arrive later must not change what deriving the export again gives.
    # None: an export made before this was recorded, which read them all.
    acks_position: int | None = None


class Manifest(msgspec.Struct):
    format: str
    tool: dict[str, str]
    projection: dict[str, str]
    command: list[str]
    exported_at: str
    workspace: str
    admins: list[str]
    formats: list[str]
    cutoff: Cutoff
    plans: list[PlanEntry]
    counts: dict[str, int]
    files: list[FileEntry]
    content_sha256: str = ""
    # full | pseudonymised | anonymised (core.research.privacy): what verify-export can prove
    mode: str = "full"
    pseudonym_key_id: str | None = None  # which key made the pseudonyms (never the key)
    notes: list[str] = msgspec.field(default_factory=list)


def tool_version() -> str:
    try:
        return metadata.version("vidda")
    except metadata.PackageNotFoundError:
        return "unknown"


def file_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def content_hash(manifest: Manifest) -> str:
    blank = msgspec.structs.replace(manifest, exported_at="", content_sha256="")
    return hashlib.sha256(msgspec.json.encode(blank, order="deterministic")).hexdigest()


def file_rows(derived: Derived, rel: str) -> int | None:
    if rel == "events.jsonl":
        return len(derived.records)
    stem = rel.rsplit("/", 1)[-1].split(".", 1)[0]
    rows = derived.tables.get(stem)
    return len(rows) if rows is not None else None


def plan_entries(derived: Derived) -> list[PlanEntry]:
    """The manifest's per-plan part: what the signed events say about each
    plan (its chains' heads, event count, consent, what was exported)."""
    red = derived.redactor
    chains: dict[bytes, list[ChainEntry]] = {}
    for h in derived.heads:
        entry = ChainEntry(h.device.hex(), h.seq, h.head.hex())
        if red is not None:
            entry = ChainEntry(red.device(h.device), h.seq, red.event_id(h.head))
        chains.setdefault(h.plan, []).append(entry)
    return [
        PlanEntry(
            plan=red.unlink(p.hex()) if red is not None else p.hex(),
            membership=p == derived.workspace,
            events=derived.aggregated.get(p, sum(c.seq for c in chains.get(p, []))),
            chains=chains.get(p, []),
            consent=derived.consent.get(p),
            content="aggregates" if p in derived.aggregated else "events",
        )
        for p in derived.plans
    ]


def build_manifest(
    derived: Derived,
    folder: Path,
    files: list[str],
    *,
    formats: tuple[str, ...],
    command: list[str],
    cutoff_rx: int,
    cutoff_acks: int | None = None,
) -> Manifest:
    red = derived.redactor
    plans = plan_entries(derived)
    last = max((r.event.env.hlc for r in derived.records), default=None)
    entries = []
    for rel in sorted(files):
        size, digest = file_sha256(folder / rel)
        entries.append(FileEntry(rel, size, digest, file_rows(derived, rel)))
    counts = {
        "events": len(derived.records),
        "plans": sum(1 for p in plans if not p.membership),
        "chains": len(derived.heads),
        **{f"rows.{name}": len(rows) for name, rows in sorted(derived.tables.items())},
    }
    manifest = Manifest(
        format=FORMAT,
        tool={"name": "vidda", "version": tool_version()},
        projection=projection_versions(),
        command=command,
        exported_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        workspace=(
            derived.redactor.unlink(derived.workspace.hex())
            if derived.redactor is not None
            else derived.workspace.hex()
        ),
        admins=[a.hex() for a in derived.admins] if red is None else red.admins(derived.admins),
        formats=list(formats),
        cutoff=Cutoff(
            cutoff_rx,
            len(derived.records),
            to_iso(last) if last is not None else None,
            cutoff_acks,
        ),
        plans=plans,
        counts=counts,
        files=entries,
        mode=derived.mode,
        pseudonym_key_id=red.key_id() if red is not None else None,
        notes=export_notes(derived),
    )
    manifest.content_sha256 = content_hash(manifest)
    return manifest


def export_notes(derived: Derived) -> list[str]:
    """What a reader of this export must know: plans held as counts only,
    and what the privacy mode left out."""
    notes = [
        f"{counted_only(derived, p)}: aggregate counts only ({n} events counted, none exported)"
        for p, n in sorted(derived.aggregated.items())
    ]
    if derived.redactor is not None:
        notes = [derived.redactor.unlink_text(n) for n in notes]
        notes.append(derived.redactor.note())
    return notes


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    """Raises `msgspec.DecodeError` / `msgspec.ValidationError` on a bad manifest."""
    return msgspec.json.decode(data, type=Manifest)
