"""`vidda init`, `whoami`, passphrases and the no-argument quick start, end to end."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

from core.identity.keyfile import DeviceKey, save_key

from .cli_helpers import (
    PASSPHRASE,
    VIDDA_MODULE,
    assert_one_line_error,
    db_rows,
    event_count,
    vidda,
    vidda_env,
    vidda_json,
    vidda_parallel,
)

HEX32 = r"[0-9a-f]{32}"
HEX64 = r"[0-9a-f]{64}"


def test_init_prints_workspace_and_device_and_whoami_agrees(tmp_path: Path) -> None:
    home = tmp_path / "kari"
    out = vidda(home, "init", "--name", "Kari Nordmann").stdout
    ws = re.search(rf"workspace\s+({HEX32})\b", out)
    dev = re.search(rf"device\s+({HEX64})\b", out)
    assert ws and dev, out
    assert "Kari Nordmann" in out
    key_before = (home / "device.key").read_bytes()
    profile_before = (home / "profile.json").read_bytes()

    whoami, again, verify = vidda_parallel(
        (home, ["whoami", "--json"], vidda_env(passphrase=None)),  # reading needs no passphrase
        (home, ["init", "--name", "Noen Andre"]),
        (home, ["verify", "--json"], vidda_env(passphrase=None)),
        check=False,
    )
    assert json.loads(whoami.stdout) == {
        "device": dev.group(1),
        "workspace": ws.group(1),
        "name": "Kari Nordmann",
        "home": str(home),
    }
    # A second init on the same home refuses, in one line, and changes nothing.
    assert_one_line_error(again, 1, "already set up", ws.group(1))
    assert (home / "device.key").read_bytes() == key_before
    assert (home / "profile.json").read_bytes() == profile_before
    # `verify` on a fresh, empty store passes.
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["ok"] is True
    # One event: the new workspace's membership log names this device its admin.
    assert json.loads(verify.stdout)["events"] == 1

    # The encrypted key (and the profile) are private to the user.
    assert stat.S_IMODE((home / "device.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "profile.json").stat().st_mode) == 0o600
    assert PASSPHRASE.encode() not in key_before


def test_init_workspace_joins_the_given_workspace(tmp_path: Path) -> None:
    first = vidda_json(tmp_path / "a", "init", "--name", "Anne")
    joined = vidda_json(tmp_path / "b", "init", "--name", "Áilu", "--workspace", first["workspace"])
    assert joined["workspace"] == first["workspace"]
    assert joined["device"] != first["device"]
    profile = json.loads((tmp_path / "b" / "profile.json").read_text(encoding="utf-8"))
    assert (profile["workspace"], profile["device"], profile["name"]) == (
        first["workspace"],
        joined["device"],
        "Áilu",
    )


def test_init_with_a_malformed_workspace_id_fails_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "nowhere"
    proc = vidda(home, "init", "--workspace", "ikke-en-id", check=False)
    assert_one_line_error(proc, 1, "workspace")
    assert not (home / "device.key").exists()
    assert not (home / "profile.json").exists()


def test_wrong_or_missing_passphrase_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "kari"
    vidda(home, "init", "--name", "Kari")
    new_plan = ["plan", "new", "--municipality", "Aure", "--title", "T"]
    wrong, missing, empty = vidda_parallel(
        (home, new_plan, vidda_env(passphrase="feil")),
        (home, new_plan, vidda_env(passphrase=None)),
        (home, new_plan, vidda_env(passphrase="")),
        check=False,
    )
    assert_one_line_error(wrong, 1, "wrong passphrase")
    assert_one_line_error(missing, 1, "VIDDA_PASSPHRASE")
    assert_one_line_error(empty, 1, "VIDDA_PASSPHRASE")
    assert event_count(home) == 1  # only init's membership event


def test_init_after_an_interrupted_init_says_what_to_do(tmp_path: Path) -> None:
    """`init` writes device.key before profile.json; if it is interrupted in
    between (Ctrl-C, full disk), running `vidda init` again must not answer
    "run `vidda init` first" (what the user just did). It should name the
    stray key file so the user can move it away (or finish the set-up)."""
    home = tmp_path / "kari"
    # The state an interrupted init leaves behind: a key and no profile.
    save_key(home / "device.key", DeviceKey.generate(), PASSPHRASE, scrypt_n=2**4)
    proc = vidda(home, "init", "--name", "Kari", check=False)
    line = assert_one_line_error(proc, 1, "device.key")
    assert "run `vidda init` first" not in line, line


def test_quick_start_sets_up_adds_the_demo_once_and_shows_it(tmp_path: Path) -> None:
    """`vidda` with no arguments (what `make run` does), the home from VIDDA_HOME."""
    home = tmp_path / "fresh"
    env = vidda_env(VIDDA_HOME=str(home), VIDDA_NAME="Kari Nordmann")
    first = vidda(None, env=env)
    assert "Welcome to vidda" in first.stdout
    assert "Added the Aure example plan" in first.stdout
    assert "Et samlet Aure med et sentrum alle er stolte av" in first.stdout
    assert "Møre og Romsdal" in first.stdout  # non-ASCII reaches the terminal intact
    assert "Faser:" in first.stdout

    assert "Kari Nordmann" in first.stdout
    assert (home / "device.key").exists()

    second = vidda(None, env=env)
    assert "Welcome to vidda" not in second.stdout
    assert "Added the Aure example plan" not in second.stdout
    assert "Et samlet Aure med et sentrum alle er stolte av" in second.stdout

    # the demo plan and the workspace's membership log
    assert db_rows(home, "SELECT count(*) FROM plans") == [(2,)]


def test_python_dash_m_reports_usage_errors_like_the_script(tmp_path: Path) -> None:
    """`python -m tui_client.cli` (the module's own `__main__` block) runs
    cli.py as `__main__`, so `cli_plan` raises `tui_client.cli.UsageError`,
    a different class from the `__main__.UsageError` that `main()` catches:
    a usage error becomes a traceback with exit 1 instead of one line, exit 2."""
    home = tmp_path / "kari"  # never set up: the usage error comes first
    args = ["--home", str(home), "plan", "add", "0123", "fest", "--title", "X"]
    script = vidda(home, *args[2:], check=False)
    assert_one_line_error(script, 2, "unknown kind")
    module = subprocess.run(
        [*VIDDA_MODULE, *args],
        capture_output=True,
        text=True,
        env=vidda_env(),
        timeout=60,
        check=False,
    )
    assert module.returncode == 2 and module.stderr == script.stderr, module.stderr


def test_home_may_follow_the_subcommand_and_a_closed_pipe_is_quiet(tmp_path) -> None:
    import os
    import subprocess
    import sys

    home = tmp_path / "h"
    env = {**os.environ, "VIDDA_PASSPHRASE": "pw"}
    env.pop("VIDDA_HOME", None)
    cli = [sys.executable, "-m", "tui_client.cli"]
    subprocess.run(
        [*cli, "init", "--home", str(home), "--name", "Áile"],
        env=env,
        check=True,
        capture_output=True,
    )
    who = subprocess.run(
        [*cli, "whoami", "--json", "--home", str(home)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert '"Áile"' in who.stdout
    subprocess.run(
        [*cli, "demo-data", "--home", str(home)], env=env, check=True, capture_output=True
    )
    shown = subprocess.Popen(
        [*cli, "--home", str(home), "plan", "list"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert shown.stdout is not None
    shown.stdout.close()  # the reader goes away at once, like `| head -0`
    _, err = shown.communicate()
    assert b"Traceback" not in err and b"Broken pipe" not in err


def test_abbreviated_options_are_refused(tmp_path: Path) -> None:
    """`--js` is not `--json` and `--hom` is not `--home`: a typo in a script
    fails, and no path slips past a private export's blanking of `--out`."""
    home = tmp_path / "kari"
    for args, message in (
        (["plan", "list", "--js"], "unrecognised arguments: --js"),
        (["--hom", str(home), "plan", "list"], "invalid choice"),
        (["export", "--anonymise", "--ou", str(tmp_path / "o")], "--ou"),
    ):
        run = vidda(home, *args, check=False)
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
