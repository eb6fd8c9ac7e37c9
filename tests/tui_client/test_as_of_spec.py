"""How `--as-of` reads its argument (in-process: no scrypt, no subprocess)."""

from pathlib import Path

from core.commands import edits
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
