"""Crashes and company: kill -9 in the middle of appends, several writers at
once, and the command line beside a log that another program holds open."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.events.bodies import NoteWritten
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.store.event_log import EventLog

from .cli_helpers import (
    VIDDA,
    NewDevice,
    db_rows,
    plan_event_count,
    stored_events,
    vidda_env,
    vidda_parallel,
)

# Appends forever, one to three events per transaction, and prints each event
# (seq and id) only after `append` returned, i.e. after COMMIT.
WRITER = r"""
import asyncio, sys
from core.commands.edits import new_plan
from core.events.bodies import NoteWritten
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.store.event_log import EventLog

async def main(db):
    log = await EventLog.open(db)
    key = DeviceKey.generate()
    plan, bodies = new_plan(title="Skrivetest i Unjárga", municipality="Nesseby")
    print("device", key.public_key.hex(), flush=True)
    n = 0
    while True:
        n += 1
        events = await log.append(key, plan, bodies)
        sys.stdout.write("".join(f"{e.env.seq} {e.id.hex()}\n" for e in events))
        sys.stdout.flush()
        bodies = [
            NoteWritten(note=new_uuid7(), target=None, text=f"notat {n}.{i} ŋ đ ŧ " + "x" * n)
            for i in range(1 + n % 3)
        ]

asyncio.run(main(sys.argv[1]))
"""


def _write_then_kill(db: Path, after: int) -> tuple[str, dict[int, str]]:
    """Start the writer, SIGKILL it once `after` events are printed; return the
    device and every (seq → id) it reported as committed."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=vidda_env(),
    ) as proc:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.startswith("device "), proc.stderr.read() if proc.stderr else header
        lines = []
        while len(lines) < after:
            line = proc.stdout.readline()
            assert line, "the writer stopped by itself"
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    committed = {}
    for line in lines:
        if line.endswith("\n"):  # a line cut by the kill proves nothing
            seq, event = line.split()
            committed[int(seq)] = event
    return header.split()[1], committed


def test_kill_9_in_the_middle_of_appends_loses_no_committed_event(new_device: NewDevice) -> None:
    dev = new_device("Kari")
    db = dev.home / "vidda.db"
    for round_no, after in enumerate((12, 60, 150), 1):
        device, committed = _write_then_kill(db, after)
        assert len(committed) >= after
        (verify,) = vidda_parallel((dev.home, ["verify", "--json"]), check=False)
        report = json.loads(verify.stdout)
        assert verify.returncode == 0 and report["ok"], (round_no, report)
        assert report["chains"] == round_no + 1  # + the membership log's first chain
        stored = {
            e.seq: hashlib.sha256(e.raw).hexdigest()
            for e in stored_events(dev.home)
            if e.device == bytes.fromhex(device)
        }
        assert sorted(stored) == list(range(1, len(stored) + 1))  # no holes
        missing = {s: e for s, e in committed.items() if stored.get(s) != e}
        assert not missing, f"round {round_no}: committed but lost: {missing}"


def test_first_writes_of_a_device_at_once_all_land(new_device: NewDevice) -> None:
    """Each process caches the devices table when it opens the log; the first
    appends of a device from several processes at once (a script, or the TUI
    beside the CLI) must not crash with `UNIQUE constraint failed`."""
    dev = new_device("Kari")
    results = vidda_parallel(
        *(
            (dev.home, ["plan", "new", "--municipality", m, "--title", f"Plan for {m}"])
            for m in ("Aure", "Kárášjohka", "Nesseby")
        ),
        check=False,
    )
    errors = [r.stderr for r in results if r.returncode != 0 or r.stderr]
    assert not errors, "\n".join(errors)
    # three plans, and the workspace's membership log
    assert db_rows(dev.home, "SELECT count(*) FROM plans") == [(4,)]


def test_the_command_line_beside_an_open_log(new_device: NewDevice) -> None:
    """A long-running program (the coming TUI, a sync client) keeps its log
    open while the user runs `vidda` commands on the same home. What the
    commands wrote must be visible to it, and it must still write."""
    dev = new_device("Kari")

    async def scenario() -> None:
        log = await EventLog.open(dev.home / "vidda.db")
        try:
            (new,) = vidda_parallel(
                (dev.home, ["plan", "new", "--municipality", "Aure", "--title", "Side om side"])
            )
            plan = bytes.fromhex(new.stdout.strip())
            assert [p for p, _ in await log.plans()] == [plan]
            assert await log.vector(plan) == {bytes.fromhex(dev.device): 7}
            assert (await log.load_state(plan)).events == 7
            # The other program writes to the same plan with its own key.
            other = DeviceKey.generate()
            body = NoteWritten(note=new_uuid7(), target=None, text="fra programmet ved siden av")
            (event,) = await log.append(other, plan, [body])
            assert event.env.seq == 1
        finally:
            await log.close()

    asyncio.run(scenario())
    assert plan_event_count(dev.home) == 8


def test_kill_9_of_a_vidda_import_leaves_all_or_nothing_and_a_valid_log(
    new_device: NewDevice, tmp_path: Path
) -> None:
    """SIGKILL a real `vidda bundle import` of a large bundle at random moments:
    the log always reopens, verifies, and holds none or all of the bundle."""
    import random
    import time

    source = new_device("Kilde")
    target = new_device("Mål", workspace=source.workspace)
    ws = bytes.fromhex(source.workspace)

    async def fill() -> None:
        log = await EventLog.open(source.home / "vidda.db", workspace=ws)
        key = DeviceKey.generate()
        plan = new_uuid7()
        for chunk in range(12):
            await log.append(
                key,
                plan,
                [
                    NoteWritten(note=new_uuid7(), target=None, text=f"notat {chunk}.{i} – Unjárga")
                    for i in range(1000)
                ],
            )
        await log.close()

    asyncio.run(fill())
    bundle = tmp_path / "stor.bundle"
    source.run("bundle", "export", "--out", bundle)
    total = 12_000
    rnd = random.Random(1576)
    for _ in range(6):
        with subprocess.Popen(
            [*VIDDA, "--home", str(target.home), "bundle", "import", str(bundle)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=vidda_env(),
        ) as proc:
            time.sleep(rnd.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        target.run("verify")  # exit 0: every stored byte still checks out
        count = plan_event_count(target.home)
        assert count in (0, total)
        if count == total:
            break
    target.run("bundle", "import", str(bundle))
    assert plan_event_count(target.home) == total
    target.run("verify")
