"""The dependency direction of DESIGN.md, enforced."""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(package: str, *, leave_out: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        if path.name in leave_out:
            continue
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_shell_or_network_or_ui() -> None:
    assert not _imports("core") & {"sync_server", "tui_client", "textual", "websockets"}


def test_pure_core_packages_do_not_touch_sqlite() -> None:
    for pkg in ("core/events", "core/projections", "core/sync", "core/commands"):
        assert not _imports(pkg) & {"aiosqlite", "sqlite3", "asyncio"}, pkg


def test_shells_do_not_import_each_other() -> None:
    assert "tui_client" not in _imports("sync_server")
    # `vidda server init` and `vidda serve` start the server shell; nothing
    # else of the client may load it.
    assert "sync_server" not in _imports("tui_client", leave_out=("cli_server.py",))


def test_importing_core_loads_no_network_or_ui_module() -> None:
    code = (
        "import sys, pkgutil, importlib, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('websockets', 'textual', 'sync_server', 'tui_client')]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
