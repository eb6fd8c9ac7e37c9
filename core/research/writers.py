"""The files of a research export, written deterministically from `Derived`.

Layout of an export folder::

    manifest.json            what, from where, heads, counts, SHA-256 of every file
    events.jsonl             every event: signed bytes (base64), envelope, body, diffs
    codebook.csv             every column of every table: type, values, meaning nb/en
    csv/TABLE.csv            (--format csv)     one file per table
    parquet/TABLE.parquet    (--format parquet) one file per table
    export.sqlite            (--format sqlite)  every table in one SQLite file

`events.jsonl` is always written: it carries the signed bytes every other
file is derived from (and verified against). Nothing in a data file
depends on the clock, the folder or the machine: the same events and the
same tool version give the same bytes.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from core.events.hlc import to_iso
from core.research.codebook import CODEBOOK, TABLE_BY_NAME, TABLES, Table, codebook_rows
from core.research.export import Derived, Progress, _noop, body_builtins, entity_of, ms_to_iso
from core.research.manifest import MANIFEST, Manifest, build_manifest, encode_manifest

Producer = Callable[[], Iterator[bytes]]
FORMATS = ("jsonl", "csv", "parquet", "sqlite")
JSONL = "events.jsonl"
AGGREGATES_JSONL = "aggregates.jsonl"
CODEBOOK_CSV = "codebook.csv"
SQLITE = "export.sqlite"


class ExportError(Exception):
    """An export that cannot be written (one line for the user)."""


class MissingExtra(ExportError):
    """An optional dependency (pyarrow for Parquet) is not installed."""


def require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise MissingExtra("Parquet needs pyarrow: pip install 'vidda[research]'") from None


_line = msgspec.json.Encoder()


def jsonl_lines(derived: Derived) -> Iterator[bytes]:
    """One JSON object per event, one line each, in the export's order."""
    members = derived.members
    red = derived.redactor
    for rec in derived.records:
        ev, env = rec.event, rec.event.env
        m = members.get(env.author)
        kind, entity = entity_of(ev)
        obj = {
            "id": ev.id.hex(),
            "plan": env.plan.hex(),
            "author_device": env.author.hex(),
            "person": m.name if m else None,
            "role": m.role if m else None,
            "seq": env.seq,
            "prev": env.prev.hex(),
            "hlc": env.hlc,
            "device_time": to_iso(env.hlc),
            "server_received_time": (
                ms_to_iso(rec.received_ms) if rec.received_ms is not None else None
            ),
            "type": env.type,
            "entity_kind": kind,
            "entity_id": entity,
            "body": body_builtins(ev),
            "changes": [
                {"field": c.field, "old": c.old, "new": c.new, "note": c.note} for c in rec.changes
            ],
            "signed_bytes": base64.b64encode(ev.raw).decode(),
        }
        if red is not None:
            obj = red.event_line(obj, rec)
        yield _line.encode(obj) + b"\n"


def aggregate_lines(rows: list[tuple[Any, ...]]) -> Iterator[bytes]:
    names = TABLE_BY_NAME["aggregates"].names
    for row in rows:
        yield _line.encode(dict(zip(names, row, strict=True))) + b"\n"


def read_aggregate_lines(data: bytes) -> list[tuple[Any, ...]]:
    """The rows of `aggregates.jsonl` (raises msgspec errors on a bad line)."""
    names = TABLE_BY_NAME["aggregates"].names
    rows = []
    for line in data.splitlines():
        obj = msgspec.json.decode(line, type=dict[str, Any])
        rows.append(tuple(obj[n] for n in names))
    return rows


def _cell(value: Any, type_: str) -> Any:
    if value is None:
        return ""
    if type_ == "boolean":
        return "true" if value else "false"
    if type_ == "bytes":
        return base64.b64encode(value).decode()
    return value


def csv_chunks(table: Table, rows: list[tuple[Any, ...]]) -> Iterator[bytes]:
    """The table as CSV (header first, "\\n" line ends, UTF-8), in chunks."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.names)
    types = [c.type for c in table.columns]
    for i, row in enumerate(rows, start=1):
        writer.writerow([_cell(v, t) for v, t in zip(row, types, strict=True)])
        if i % 5000 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def codebook_table_rows() -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in CODEBOOK.names) for r in codebook_rows()]


def text_files(derived: Derived, formats: tuple[str, ...]) -> dict[str, Producer]:
    """Every text file of an export: relative path -> a producer of its bytes."""
    files: dict[str, Producer] = {
        JSONL: lambda: jsonl_lines(derived),
        CODEBOOK_CSV: lambda: csv_chunks(CODEBOOK, codebook_table_rows()),
    }
    if derived.tables["aggregates"]:
        # Plans without research consent: their counts, the one record of
        # them in the export (verify-export reads them back from here).
        files[AGGREGATES_JSONL] = lambda: aggregate_lines(derived.tables["aggregates"])
    if "csv" in formats:
        for table in TABLES:
            files[f"csv/{table.name}.csv"] = (
                lambda t=table: csv_chunks(t, derived.tables[t.name])  # type: ignore[misc]
            )
    return files


# --- Parquet (optional: pyarrow) -----------------------------------------------------------

_ARROW_TYPES = {
    "integer": "int64",
    "boolean": "bool_",
    "bytes": "binary",
}


def parquet_paths() -> list[str]:
    return [f"parquet/{t.name}.parquet" for t in (*TABLES, CODEBOOK)]


def write_parquet(derived: Derived, folder: Path) -> None:
    """One Parquet file per table (zstd, explicit schema), readable as is by
    DuckDB, pandas and polars."""
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for table in (*TABLES, CODEBOOK):
        rows = derived.tables[table.name] if table is not CODEBOOK else codebook_table_rows()
        fields = [
            pa.field(c.name, getattr(pa, _ARROW_TYPES.get(c.type, "string"))())
            for c in table.columns
        ]
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
        arrays = [pa.array(list(col), type=f.type) for col, f in zip(columns, fields, strict=True)]
        pq.write_table(
            pa.Table.from_arrays(arrays, schema=pa.schema(fields)),
            folder / f"{table.name}.parquet",
            compression="zstd",
        )


# --- SQLite -------------------------------------------------------------------------------

_SQL_TYPES = {"integer": "INTEGER", "boolean": "INTEGER", "bytes": "BLOB"}


def write_sqlite(derived: Derived, path: Path) -> None:
    """Every table in one fresh SQLite file (booleans as 0/1)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for table in (*TABLES, CODEBOOK):
            rows = derived.tables[table.name] if table is not CODEBOOK else codebook_table_rows()
            cols = ", ".join(f'"{c.name}" {_SQL_TYPES.get(c.type, "TEXT")}' for c in table.columns)
            conn.execute(f'CREATE TABLE "{table.name}" ({cols})')
            marks = ", ".join("?" for _ in table.columns)
            conn.executemany(f'INSERT INTO "{table.name}" VALUES ({marks})', rows)
        conn.execute("COMMIT")
    finally:
        conn.close()
    os.replace(tmp, path)


def binary_files(formats: tuple[str, ...]) -> list[str]:
    out = []
    if "parquet" in formats:
        out += parquet_paths()
    if "sqlite" in formats:
        out.append(SQLITE)
    return out


def write_binary(derived: Derived, folder: Path, formats: tuple[str, ...]) -> None:
    if "parquet" in formats:
        write_parquet(derived, folder / "parquet")
    if "sqlite" in formats:
        write_sqlite(derived, folder / SQLITE)


def write_files(
    derived: Derived, folder: Path, formats: tuple[str, ...], progress: Progress = _noop
) -> list[str]:
    """Write every data file of the export into `folder`; their relative paths."""
    written = []
    texts = text_files(derived, formats)
    for n, (rel, produce) in enumerate(texts.items()):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            for i, chunk in enumerate(produce(), start=1):
                fh.write(chunk)
                if rel == JSONL and i % 20_000 == 0:
                    progress("write events.jsonl", i, len(derived.records))
        written.append(rel)
        progress("write", n + 1, len(texts) + len(binary_files(formats)))
    write_binary(derived, folder, formats)
    written += binary_files(formats)
    progress("write", len(written), len(written))
    return written


def export_to(
    folder: Path,
    derived: Derived,
    *,
    formats: tuple[str, ...],
    command: list[str],
    cutoff_rx: int,
    cutoff_acks: int | None = None,
    progress: Progress = _noop,
) -> Manifest:
    """Write a whole export into `folder` (new or empty), the manifest last:
    a folder without `manifest.json` is an interrupted export."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r} (formats: {', '.join(FORMATS)})")
    formats = tuple(f for f in FORMATS if f in formats or f == "jsonl")
    if "parquet" in formats:
        require_pyarrow()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ExportError(f"{folder} exists and is not an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    files = write_files(derived, folder, formats, progress)
    manifest = build_manifest(
        derived,
        folder,
        files,
        formats=formats,
        command=command,
        cutoff_rx=cutoff_rx,
        cutoff_acks=cutoff_acks,
    )
    (folder / MANIFEST).write_bytes(encode_manifest(manifest))
    return manifest
