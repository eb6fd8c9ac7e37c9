"""`vidda plan …`, `log`, `--as-of` and `verify`, end to end on one device.

The module fixture builds one plan the way an adviser would, command by
command (independent commands run side by side, so several processes also
write the same log at once); the tests then check what each step left.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from core.commands.edits import phase_template

from .cli_helpers import (
    PLAN_EVENTS,
    Device,
    assert_one_line_error,
    event_count,
    init_device,
    plan_event_count,
    plan_ids,
    stored_events,
    unique_prefix,
    vidda_parallel,
)

OLD_TITLE = "Et samlet Aure"
TITLE = "Et samlet Aure med et sentrum alle er stolte av"
DESIRED = (
    "Det er skapt positivt engasjement for sentrum, og kommunen har gjennomført "
    "gode og brede medvirkningsprosesser."
)
GOAL = "Aure er en samlet kommune med et sentrum som alle innbyggerne er stolte av."
WHO = "En kommune med mange grender og sterk grendetilhørighet."

HEX32 = re.compile(r"[0-9a-f]{32}")


@dataclass
class Built:
    dev: Device
    plan: str
    first: dict[str, Any]  # `plan show --json` right after `plan new`
    ids: dict[str, str] = field(default_factory=dict)  # what `plan add` printed
    refs: dict[str, str] = field(default_factory=dict)  # the prefixes given for references
    show: dict[str, Any] = field(default_factory=dict)  # the final `plan show --json`
    listed: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    verify: dict[str, Any] = field(default_factory=dict)
    events: int = 0


def _out(proc: Any) -> str:
    return str(proc.stdout).strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dev = init_device(tmp_path_factory.mktemp("plan") / "kari", "Kari Nordmann")
    home = dev.home
    plan = _out(
        dev.run("plan", "new", "--municipality", "Aure", "--county", "Møre og Romsdal",
                "--title", OLD_TITLE)
    )  # fmt: skip
    assert HEX32.fullmatch(plan), plan
    first = dev.run("plan", "show", plan[:10], "--json")  # a prefix of the plan id
    b = Built(dev, plan, json.loads(first.stdout))

    # Four writers at once on one log, each setting a different plan field.
    vidda_parallel(
        (home, ["plan", "set", plan, "title", TITLE]),
        (home, ["plan", "set", plan, "desired_result", DESIRED]),
        (home, ["plan", "set", plan, "societal_goal", GOAL]),
        (home, ["plan", "set", plan, "who_are_we", WHO]),
    )

    known = plan_ids(b.first)

    def ref(hex_id: str) -> str:
        # UUIDv7 ids start with the millisecond clock: entities that other
        # commands create at the same moment (the parallel steps below) share
        # the first ~12 digits, so a prefix unique *now* needs room past them.
        pfx = unique_prefix(hex_id, known, minimum=16)
        assert len(pfx) < len(hex_id)
        return pfx

    template_phase = b.first["phases"][1]["id"]
    b.refs["need.phase"] = ref(template_phase)
    kinds = ["phase", "sub-goal", "actor", "decision", "need"]
    results = vidda_parallel(
        (home, ["plan", "add", plan, "phase", "--name", "Forankring i grendene",
                "--planned-start", "2021-09-01", "--planned-end", "2021-10-31"]),
        (home, ["plan", "add", plan, "sub-goal", "--text", "Ungdommen bruker sentrum",
                "--due", "2021-12-31"]),
        (home, ["plan", "add", plan, "actor", "--name", "Ungdomsrådet", "--category", "youth",
                "--influence", "2", "--interest", "3", "--stance", "supportive",
                "--bellwether", "ja", "--participation", "must"]),
        (home, ["plan", "add", plan, "decision", "--body", "council", "--text",
                "Kommunestyret vedtok prosessplanen", "--date", "2021-02-01",
                "--case-ref", "21/12"]),
        (home, ["plan", "add", plan, "need", "--kind", "knowledge", "--text",
                "Hva bruker ungdom og eldre sentrum til?", "--phase", b.refs["need.phase"]]),
    )  # fmt: skip
    for kind, proc in zip(kinds, results, strict=True):
        b.ids[kind] = _out(proc)
        assert HEX32.fullmatch(b.ids[kind]), (kind, proc.stdout)
        known.append(b.ids[kind])

    b.refs["activity.phase"] = ref(b.ids["phase"])
    b.refs["activity.sub_goal"] = ref(b.ids["sub-goal"])
    b.ids["activity"] = _out(
        dev.run("plan", "add", plan, "activity", "--title", "Politisk arbeidsverksted",
                "--kind", "political_workshop", "--date", "2021-01-28", "--mode", "physical",
                "--duration-minutes", "120", "--responsible", "Ordføreren",
                "--phase", b.refs["activity.phase"], "--sub-goal", b.refs["activity.sub_goal"])
    )  # fmt: skip
    known.append(b.ids["activity"])
    b.refs["activity"] = ref(b.ids["activity"])
    inv, note, doomed = vidda_parallel(
        (home, ["plan", "add", plan, "involvement", "--activity", b.refs["activity"],
                "--category", "politicians", "--participants", "19"]),
        (home, ["plan", "add", plan, "note", "--target", b.refs["activity"],
                "--text", "Husk å invitere grendelagene."]),
        (home, ["plan", "add", plan, "notat", "--target", "-", "--text", "Utkast som skal bort"]),
    )  # fmt: skip
    b.ids["involvement"], b.ids["note"], b.ids["doomed"] = _out(inv), _out(note), _out(doomed)
    known += [b.ids["involvement"], b.ids["note"], b.ids["doomed"]]

    vidda_parallel(
        (home, ["plan", "update", plan, ref(b.ids["activity"]), "--status", "done",
                "--outcome", "19 politikere deltok"]),
        (home, ["plan", "remove", plan, ref(b.ids["doomed"])]),
    )  # fmt: skip
    # An edit of the removed note (as if it came from someone who had not seen
    # the removal): kept and surfaced, not dropped.
    dev.run("plan", "update", plan, ref(b.ids["doomed"]), "--text", "Endret etter fjerning")

    show, listed, log, verify = vidda_parallel(
        (home, ["plan", "show", plan, "--json"]),
        (home, ["plan", "list", "--json"]),
        (home, ["log", plan, "--json"]),
        (home, ["verify", "--json"]),
    )
    b.show, b.listed = json.loads(show.stdout), json.loads(listed.stdout)
    b.log, b.verify = json.loads(log.stdout), json.loads(verify.stdout)
    b.events = plan_event_count(home)
    return b


def _one(items: list[dict[str, Any]], hex_id: str) -> dict[str, Any]:
    found = [e for e in items if e["id"] == hex_id]
    assert len(found) == 1, (hex_id, items)
    return found[0]["fields"]


# --- creating and reading ------------------------------------------------------------------


def test_plan_new_prints_an_id_that_list_shows(built: Built) -> None:
    assert HEX32.fullmatch(built.plan)
    assert built.first["plan"] == built.plan
    assert built.first["events"] == 7  # the plan and its six template phases
    assert built.listed == [
        {
            "plan": built.plan,
            "title": TITLE,
            "municipality": "Aure",
            "status": "active",
            "events": built.events,
            "conflicts": 0,
            "phases_done": 0,
            "phases": 7,
        }
    ]


def test_plan_show_has_the_template_phases_in_order(built: Built) -> None:
    template = phase_template()
    phases = built.first["phases"]
    assert [p["fields"]["name"] for p in phases] == [t["name"] for t in template]
    assert [p["fields"]["key_question"] for p in phases] == [t["key_question"] for t in template]
    assert all(p["fields"]["status"] == "planned" for p in phases)
    positions = [p["fields"]["position"] for p in phases]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert built.first["fields"]["county"] == "Møre og Romsdal"
    # A phase added later goes last; the template order is kept.
    final = [p["id"] for p in built.show["phases"]]
    assert final == [p["id"] for p in phases] + [built.ids["phase"]]


def test_plan_set_title_result_goal_and_key_question(built: Built) -> None:
    f = built.show["fields"]
    assert f["title"] == TITLE
    assert f["desired_result"] == DESIRED
    assert f["societal_goal"] == GOAL
    assert f["q_who_are_we"] == WHO
    assert built.show["plan_conflicts"] == []
    assert built.show["conflicts"] == []


def test_plan_add_every_kind_with_references_given_as_prefixes(built: Built) -> None:
    s, ids = built.show, built.ids
    assert _one(s["phases"], ids["phase"])["name"] == "Forankring i grendene"
    assert _one(s["phases"], ids["phase"])["planned_start"] == "2021-09-01"
    assert _one(s["sub_goals"], ids["sub-goal"]) == {
        "text": "Ungdommen bruker sentrum",
        "due": "2021-12-31",
        "status": "open",
        "position": _one(s["sub_goals"], ids["sub-goal"])["position"],
    }
    actor = _one(s["actors"], ids["actor"])
    assert (actor["name"], actor["category"], actor["influence"], actor["interest"]) == (
        "Ungdomsrådet",
        "youth",
        2,
        3,
    )
    assert (actor["stance"], actor["bellwether"], actor["participation"]) == (
        "supportive",
        True,
        "must",
    )
    decision = _one(s["decisions"], ids["decision"])
    assert (decision["body"], decision["date"], decision["case_ref"]) == (
        "council",
        "2021-02-01",
        "21/12",
    )
    need = _one(s["needs"], ids["need"])
    assert need["kind"] == "knowledge"
    assert need["phase"] == built.first["phases"][1]["id"]  # the prefix was resolved
    act = _one(s["activities"], ids["activity"])
    assert act["phase"] == ids["phase"]
    assert act["sub_goal"] == ids["sub-goal"]
    assert (act["kind"], act["date"], act["mode"], act["duration_minutes"]) == (
        "political_workshop",
        "2021-01-28",
        "physical",
        120,
    )
    assert act["responsible"] == "Ordføreren"
    inv = _one(s["involvement"], ids["involvement"])
    assert inv == {"activity": ids["activity"], "category": "politicians", "participants": 19}
    note = _one(s["notes"], ids["note"])
    assert note == {"target": ids["activity"], "text": "Husk å invitere grendelagene."}
    for kind, ref in built.refs.items():
        assert len(ref) < 32, (kind, ref)


def test_plan_update_changes_the_fields(built: Built) -> None:
    act = _one(built.show["activities"], built.ids["activity"])
    assert act["status"] == "done"
    assert act["outcome"] == "19 politikere deltok"
    assert act["title"] == "Politisk arbeidsverksted"  # untouched fields stay


def test_edit_after_remove_is_surfaced_not_dropped(built: Built) -> None:
    doomed = built.ids["doomed"]
    assert [n["id"] for n in built.show["notes"]] == [built.ids["note"]]
    assert [e["id"] for e in built.show["removed"]] == [doomed]
    after = built.show["edited_after_removal"]
    assert [(e["entity"], e["kind"], e["field"], e["value"]) for e in after] == [
        (doomed, "note", "text", "Endret etter fjerning")
    ]
    assert after[0]["author"] == built.dev.device


def test_concurrent_writers_left_one_verifiable_chain(built: Built) -> None:
    # 7 (new) + 4 (set) + 5 + 1 + 3 (add) + 2 (update, remove) + 1 (update)
    assert built.events == 23
    assert built.show["events"] == 23
    assert built.verify["ok"] is True
    # + the membership log's first event (this device made the workspace)
    assert (built.verify["events"], built.verify["chains"]) == (24, 2)
    seqs = [r[0] for r in _rows(built.dev.home, f"SELECT seq {PLAN_EVENTS} ORDER BY seq")]
    assert seqs == list(range(1, 24))


def _rows(home: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(home / "vidda.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --- bad input --------------------------------------------------------------------------------


def test_bad_input_is_one_line_nonzero_and_writes_nothing(built: Built) -> None:
    p = built.plan
    phases = [ph["id"] for ph in built.first["phases"]]
    common = 0
    while phases[0][common] == phases[1][common]:
        common += 1
    ambiguous = phases[0][: max(common, 1)]
    act = unique_prefix(built.ids["activity"], plan_ids(built.show))
    cases: list[tuple[str, list[str], int, str]] = [
        ("unknown plan field", ["plan", "set", p, "bogus", "x"], 1, "no field 'bogus'"),
        ("closed field, bad value", ["plan", "set", p, "status", "halvferdig"], 1, "status"),
        ("too long", ["plan", "set", p, "title", "x" * 301], 1, "300"),
        ("unknown entity field", ["plan", "add", p, "activity", "--title", "X", "--nosuch", "y"],
         1, "no field 'nosuch'"),
        ("bad date", ["plan", "add", p, "activity", "--title", "X", "--date", "2021-13-01"],
         1, "date"),
        ("score > 3", ["plan", "add", p, "actor", "--name", "X", "--influence", "7"],
         1, "influence"),
        ("ambiguous reference", ["plan", "add", p, "activity", "--title", "X", "--phase",
                                 ambiguous], 1, "ambiguous"),
        ("unknown reference", ["plan", "add", p, "need", "--kind", "process", "--text", "X",
                               "--phase", "fffff"], 1, "no entity"),
        ("not hex", ["plan", "update", p, "zz", "--title", "X"], 1, "not a hex"),
        ("ambiguous entity", ["plan", "remove", p, ambiguous], 1, "ambiguous"),
        ("half-valid update", ["plan", "update", p, act, "--title", "Nytt", "--mode", "måne"],
         1, "mode"),
        ("unknown plan", ["plan", "set", "fffff", "title", "X"], 1, "no plan"),
        ("unknown kind", ["plan", "add", p, "fest", "--title", "X"], 2, "unknown kind"),
        ("reference of the wrong kind", ["plan", "add", p, "need", "--kind", "process",
                                         "--text", "X", "--phase", act], 1, "must name a phase"),
    ]  # fmt: skip
    before = event_count(built.dev.home)
    results = vidda_parallel(*((built.dev.home, args) for _, args, _, _ in cases), check=False)
    failures = []
    for (label, _args, code, needle), proc in zip(cases, results, strict=True):
        try:
            assert_one_line_error(proc, code, needle)
        except AssertionError as exc:
            failures.append(f"[{label}] {exc}")
    assert not failures, "\n\n".join(failures)
    assert event_count(built.dev.home) == before


def test_an_ambiguous_prefix_error_shows_how_the_candidates_differ(built: Built) -> None:
    """Ids made in one millisecond share their first 12+ hex digits (UUIDv7),
    so listing each candidate cut at len(prefix) + 4 digits prints the same
    string five times; the list must let the user tell them apart."""
    phases = [ph["id"] for ph in built.first["phases"]]
    ambiguous = phases[0][:8]
    assert all(ph.startswith(ambiguous) for ph in phases)
    (proc,) = vidda_parallel(
        (built.dev.home, ["plan", "remove", built.plan, ambiguous]), check=False
    )
    line = assert_one_line_error(proc, 1, "ambiguous")
    shown = [s.strip(" …") for s in line[line.index("(") + 1 : line.rindex(")")].split(",")]
    assert len(shown) >= 2 and len(set(shown)) == len(shown), line


def test_impossible_calendar_date_is_rejected(built: Built) -> None:
    """`2021-02-30` matches the date pattern but is no date: a researcher's
    export or any date arithmetic would choke on it later."""
    before = event_count(built.dev.home)
    (proc,) = vidda_parallel(
        (built.dev.home, ["plan", "set", built.plan, "desired_result_due", "2021-02-30"]),
        check=False,
    )
    assert_one_line_error(proc, 1, "desired_result_due")
    assert event_count(built.dev.home) == before


# --- Nordic text ----------------------------------------------------------------------------

BOKMAL = "Vi ønsker et levende sentrum – for både unge og eldre i Aure, Åfjord og Bø."
NYNORSK = "Korleis kan vi nå ungdomen? Kva for kunnskap treng vi om grendene våre?"
SAMI = (
    "Mii háliidit ahte nuorat ja boarrásat oassálastet: "
    "á č đ ŋ š ŧ ž – Á Č Đ Ŋ Š Ŧ Ž – Guovdageaidnu, Kárášjohka, Unjárga."
)
NFC_TEXT = "Åfjord, Bø og Čáhcesuolu: æøå ÆØÅ – ŋ đ ŧ"


def test_nordic_text_round_trips_byte_for_byte(built: Built) -> None:
    p, home = built.plan, built.dev.home
    nfd = unicodedata.normalize("NFD", NFC_TEXT)
    assert nfd != NFC_TEXT
    _, actor = vidda_parallel(
        (home, ["plan", "update", p, p, "--title", BOKMAL, "--societal-goal", NYNORSK,
                "--who_are_we", SAMI, "--desired-result", nfd,
                "--municipality_sami", "Ávrre"]),
        (home, ["plan", "add", p, "aktør", "--name", "Sámediggi – Sámi parlameanta",
                "--description", SAMI, "--category", "state"]),
    )  # fmt: skip
    actor_id = actor.stdout.strip()
    (show,) = vidda_parallel((home, ["plan", "show", p, "--json"]))
    data = json.loads(show.stdout)
    f = data["fields"]
    assert f["title"].encode() == BOKMAL.encode()
    assert f["societal_goal"].encode() == NYNORSK.encode()
    assert f["q_who_are_we"].encode() == SAMI.encode()
    assert f["municipality_sami"] == "Ávrre"
    assert f["desired_result"].encode() == NFC_TEXT.encode()  # decomposed in, composed out
    a = _one(data["actors"], actor_id)
    assert a["name"] == "Sámediggi – Sámi parlameanta"
    assert a["description"].encode() == SAMI.encode()
    # The JSON carries the text as UTF-8, not as escapes.
    raw = show.stdout.encode()
    for text in (BOKMAL, NYNORSK, SAMI, NFC_TEXT):
        assert text.encode() in raw
    assert nfd.encode() not in raw


def test_limits_count_composed_characters(built: Built) -> None:
    """A 200-letter title typed in decomposed form (as macOS hands out text)
    is 200 characters once composed, well within the 300 limit; the length
    check must not count the combining marks of the input."""
    title = "å" * 200
    (proc,) = vidda_parallel(
        (built.dev.home, ["plan", "set", built.plan, "title", unicodedata.normalize("NFD", title)]),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (show,) = vidda_parallel((built.dev.home, ["plan", "show", built.plan, "--json"]))
    assert json.loads(show.stdout)["fields"]["title"] == title


# --- history --------------------------------------------------------------------------------


def test_log_shows_old_and_new_values(built: Built) -> None:
    titles = [r for r in built.log if r["field"] == "title" and r["kind"] == "plan"]
    assert [(r["old"], r["new"]) for r in titles] == [([], OLD_TITLE), ([OLD_TITLE], TITLE)]
    assert titles[1]["type"] == "PlanDetailsRevised"
    assert titles[1]["author"] == built.dev.device
    status = [
        r for r in built.log if r["entity"] == built.ids["activity"] and r["field"] == "status"
    ]
    assert [(r["type"], r["old"], r["new"]) for r in status][-1] == (
        "ActivityCompleted",
        ["planned"],
        "done",
    )
    removal = [r for r in built.log if r["entity"] == built.ids["doomed"] and r["note"]]
    assert [r["note"] for r in removal] == ["removed"]


def test_show_as_of_an_event_or_a_time_gives_the_earlier_state(built: Built) -> None:
    p, home = built.plan, built.dev.home
    # The last event of `plan new`: the sixth template phase.
    created = [r for r in built.log if r["type"] == "PhaseAdded" and r["field"] == "name"]
    last_of_new = created[5]
    assert last_of_new["new"] == phase_template()[5]["name"]
    event_prefix = unique_prefix(last_of_new["event"], [r["event"] for r in built.log], 8)
    when = last_of_new["time"]  # ISO, UTC, milliseconds
    oslo = (
        datetime.fromisoformat(when.replace("Z", "+00:00"))
        .astimezone(timezone(timedelta(hours=1)))
        .isoformat(timespec="milliseconds")
    )
    by_event, by_time, by_local_time = vidda_parallel(
        (home, ["plan", "show", p, "--as-of", event_prefix, "--json"]),
        (home, ["plan", "show", p, "--as-of", when, "--json"]),
        (home, ["plan", "show", p, "--as-of", oslo, "--json"]),
    )
    then = json.loads(by_event.stdout)
    assert then["as_of"] == event_prefix
    assert then["fields"]["title"] == OLD_TITLE
    assert "desired_result" not in then["fields"]
    assert [ph["id"] for ph in then["phases"]] == [ph["id"] for ph in built.first["phases"]]
    assert then["activities"] == [] and then["actors"] == [] and then["removed"] == []
    assert then["events"] == 7
    for other in (by_time, by_local_time):
        view = json.loads(other.stdout)
        view.pop("as_of")
        then.pop("as_of", None)
        assert view == then


# --- verify ---------------------------------------------------------------------------------


def _tampered_copy(src: Path, dst: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
    shutil.copytree(src, dst)
    conn = sqlite3.connect(dst / "vidda.db")
    try:
        conn.execute("DROP TRIGGER events_append_only_u")
        conn.execute("DROP TRIGGER events_append_only_d")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def test_verify_names_the_tampered_event(built: Built, tmp_path: Path) -> None:
    home = built.dev.home
    (data3,) = _rows(home, "SELECT data FROM events WHERE seq=3")[0]
    bad = bytearray(data3)
    bad[len(bad) // 2] ^= 0x01  # one bit, in the middle of the signed body
    flipped = tmp_path / "flipped"
    _tampered_copy(home, flipped, [("UPDATE events SET data=? WHERE seq=3", (bytes(bad),))])
    (tampered,) = stored_events(flipped, "WHERE seq=3")
    deleted = tmp_path / "deleted"
    _tampered_copy(home, deleted, [("DELETE FROM events WHERE seq=5", ())])
    column = tmp_path / "column"
    _tampered_copy(home, column, [("UPDATE events SET hlc=hlc+1 WHERE seq=8", ())])

    text, gap, col = vidda_parallel(
        (flipped, ["verify"]),
        (deleted, ["verify", "--json"]),
        (column, ["verify", "--full", "--json"]),
        check=False,
    )
    assert text.returncode == 1, text.stderr
    bad_id = hashlib.sha256(tampered.raw).hexdigest()
    (line,) = text.stderr.splitlines()
    assert "seq 3 " in line and bad_id[:16] in line, text.stderr
    assert "FAILED" in text.stdout and "1 bad chains" in text.stdout

    gap_report = json.loads(gap.stdout)
    assert gap.returncode == 1
    assert [(p["seq"], p["reason"]) for p in gap_report["problems"]] == [(6, "gap")]
    assert "5" in gap_report["problems"][0]["message"]

    col_report = json.loads(col.stdout)
    assert col.returncode == 1
    assert [(p["seq"], p["reason"]) for p in col_report["problems"]] == [(8, "bad_signature")]
    assert built.verify["ok"] is True  # (the store the copies came from)
