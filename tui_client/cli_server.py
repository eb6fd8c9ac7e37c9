"""`vidda server init` and `vidda serve`: run the sync server (sync_server).

The only module of the client that reaches into the server shell, and only
when one of these commands runs: the rest of the client never loads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tui_client.cli import emit_json
from tui_client.home import HomeError


def register(sub: Any) -> None:
    server = sub.add_parser("server", help="set up a sync server's data folder")
    ssub = server.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    p = ssub.add_parser("init", help="create a server for one workspace (--home DIR)")
    p.add_argument("--workspace", required=True, help="workspace id (hex, `vidda whoami`)")
    p.add_argument(
        "--admin", action="append", required=True, help="an admin device key (repeatable)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_server_init)

    p = sub.add_parser("serve", help="run the sync server (--home DIR)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0: pick a free port")
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.set_defaults(handler=cmd_serve)


def _server_home(args: argparse.Namespace) -> Path:
    if args.home is None:
        from tui_client.cli import UsageError

        raise UsageError("give the server's data folder with --home DIR")
    return Path(args.home).expanduser()


def init_server_home(home: Path, workspace: str, admins: list[str]) -> Any:
    """Create a server's data folder (`vidda server init`); one-line errors."""
    from sync_server.config import ServerConfigError, init_server

    try:
        return init_server(home, workspace, admins)
    except ServerConfigError as exc:
        raise HomeError(str(exc)) from None


async def cmd_server_init(args: argparse.Namespace, extra: list[str]) -> int:
    home = _server_home(args)
    config = init_server_home(home, args.workspace, args.admin)
    if args.json:
        emit_json({"home": str(home), **{f: getattr(config, f) for f in config.__struct_fields__}})
    else:
        print(f"Server set up in {home}")
        print(f"  workspace {config.workspace}")
        print(f"  server    {config.server_id}")
        for admin in config.admins:
            print(f"  admin     {admin}")
    return 0


async def cmd_serve(args: argparse.Namespace, extra: list[str]) -> int:
    from sync_server.config import ServerConfigError
    from sync_server.server import run_server, setup_logging

    home = _server_home(args)
    setup_logging()
    scheme = "wss" if args.tls_cert else "ws"

    def ready(server: Any) -> None:
        host, port = server.sockets[0].getsockname()[:2]
        print(f"serving {scheme}://{host}:{port}", flush=True)

    try:
        await run_server(
            home, args.host, args.port, tls_cert=args.tls_cert, tls_key=args.tls_key, ready=ready
        )
    except (ServerConfigError, ValueError) as exc:
        raise HomeError(str(exc)) from None
    return 0
