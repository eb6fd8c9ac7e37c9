"""How `--as-of` reads its argument (in-process: no scrypt, no subprocess)."""

from pathlib import Path

import msgspec

from core.commands import edits
from core.events.envelope import Event
from core.events.hlc import from_iso
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.store.event_log import EventLog
from core.store.time_travel import key_at_time, key_of
from tui_client.cli_plan import as_of_key


async def test_dates_are_dates_and_hex_is_an_event(tmp_path: Path) -> None:
    log = await EventLog.open(tmp_path / "a.db", workspace=new_uuid7())
    try:
        plan, bodies = edits.new_plan(title="Sør-Aurdal", municipality="Sør-Aurdal")
        events = await log.append(DeviceKey.generate(), plan, bodies)
        assert await as_of_key(log, plan, "20210128") == key_at_time(from_iso("20210128") | 0xFFFF)
        target = events[3]
        assert await as_of_key(log, plan, target.id.hex()[:12]) == key_of(target)
    finally:
        await log.close()


async def test_an_all_digit_event_prefix_that_is_no_date_is_an_event(tmp_path: Path) -> None:
    """About 2 % of 8-digit event prefixes are all digits (00863392): those
    that are no date must still find their event."""
    log = await EventLog.open(tmp_path / "a.db", workspace=new_uuid7())
    try:
        plan, bodies = edits.new_plan(title="Grue", municipality="Grue")
        events = await log.append(DeviceKey.generate(), plan, bodies)
        target = msgspec.structs.replace(
            events[2], id=bytes.fromhex("00863392" + events[2].id.hex()[8:])
        )

        async def with_prefix(plan_: bytes, prefix: str) -> list[Event]:
            return [target] if target.id.hex().startswith(prefix) else []

        log.events_with_id_prefix = with_prefix  # type: ignore[method-assign]
        assert await as_of_key(log, plan, "00863392") == key_of(target)
    finally:
        await log.close()


async def test_show_as_of_shows_progress_while_it_builds_the_time_line(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """The first `plan show --as-of` of a large plan builds its time line
    (10–20 s at 100k events): stderr says how far it is; stdout is the plan."""
    from functools import partial

    from core.events import bodies as b
    from core.store import time_travel
    from tests.core.replica import Replica
    from tui_client import cli_plan
    from tui_client.cli import ProgressBar
    from tui_client.home import Home

    monkeypatch.setattr(time_travel, "TIMELINE_STEP", 7)
    monkeypatch.setattr(time_travel, "TIMELINE_FORMAT", "test+step7")
    monkeypatch.setattr(cli_plan, "ProgressBar", partial(ProgressBar, after_s=0.0, every_s=0.0))
    home = Home(tmp_path / "home")
    await home.init("Kari", None, passphrase="pass")
    log = await home.open_log()
    plan = new_uuid7()
    try:
        dev = Replica(log.workspace, plan)
        dev.make(b.PlanCreated(title="Grue", municipality="Grue"))
        for i in range(40):
            dev.make(*edits.set_fields(dev.state, "plan", plan, {"title": f"Grue {i}"}))
        await log.ingest([e.raw for e in dev.made])
    finally:
        await log.close()
    await cli_plan.show_plan(home, plan, "2100-01-01", as_json=False)
    out, err = capsys.readouterr()
    assert "Grue 39" in out
    assert "vidda: time line: 41/41" in err.splitlines()
