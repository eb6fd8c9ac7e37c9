"""A sync server's data folder.

Layout of the server home (`vidda server init --home DIR`)::

    server.json   workspace id, admin device keys, server id
    server.db     the server's event log (SQLite, WAL, synchronous=FULL)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from core.events.ids import new_uuid7, parse_hex
from core.identity.atomic_file import write_atomic


class ServerConfigError(Exception):
    pass


class ServerConfig(msgspec.Struct, kw_only=True):
    workspace: str
    admins: list[str]
    server_id: str
    created: str


def config_path(home: Path) -> Path:
    return home / "server.json"


def db_path(home: Path) -> Path:
    return home / "server.db"


def init_server(home: Path, workspace: str, admins: list[str]) -> ServerConfig:
    path = config_path(home)
    if path.exists():
        raise ServerConfigError(f"{home} already holds a server ({path.name}); not overwritten")
    ws = parse_hex(workspace, 16, "workspace id")
    if not admins:
        raise ServerConfigError("a server needs at least one --admin device key")
    keys = [parse_hex(a, 32, "admin device key").hex() for a in admins]
    config = ServerConfig(
        workspace=ws.hex(),
        admins=keys,
        server_id=new_uuid7().hex(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    home.mkdir(parents=True, exist_ok=True)
    write_atomic(path, msgspec.json.format(msgspec.json.encode(config)) + b"\n", 0o600)
    return config


def load_config(home: Path) -> ServerConfig:
    try:
        return msgspec.json.decode(config_path(home).read_bytes(), type=ServerConfig)
    except FileNotFoundError:
        raise ServerConfigError(
            f"no server at {home}; run `vidda server init --home {home} ...` first"
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ServerConfigError(f"{config_path(home)} is damaged: {exc}") from None
