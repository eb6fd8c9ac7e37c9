"""`vidda plan consent`, private exports, `vidda replay` and `vidda report`
as a researcher runs them: real processes on a real home."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .cli_helpers import Device, NewDevice, db_rows, init_device, vidda, vidda_parallel


@pytest.fixture(scope="module")
def kari(tmp_path_factory: pytest.TempPathFactory) -> Device:
    dev = init_device(tmp_path_factory.mktemp("kari") / "home", "Kari Nordmann")
    dev.run("demo-data")
    return dev


def _aure(dev: Device) -> str:
    return next(p["plan"] for p in dev.json("plan", "list") if p["municipality"] == "Aure")


def test_replay_from_the_log_and_from_an_export_is_byte_identical(
    kari: Device, tmp_path: Path
) -> None:
    plan = _aure(kari)
    out = tmp_path / "export"
    kari.run("export", "--out", out)
    log, export, text = vidda_parallel(
        (kari.home, ["replay", plan, "--json"]),
        (kari.home, ["replay", plan[:12], "--json", "--export", out]),
        (kari.home, ["replay", plan]),
    )
    assert log.stdout == export.stdout
    steps = [json.loads(line) for line in log.stdout.splitlines()]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0]["type"] == "PlanCreated" and steps[0]["fold"].startswith("plan-state/")
    assert steps[0]["changed"]["municipality"] == [None, "Aure"]
    assert text.stdout.startswith("#1 ") and "municipality: None → 'Aure'" in text.stdout
    states = kari.run("replay", plan, "--json", "--states").stdout.splitlines()
    last = json.loads(states[-1])["state"]
    assert last == kari.json("plan", "show", plan)


def test_report_text_json_and_plots(kari: Device, tmp_path: Path) -> None:
    plan = _aure(kari)
    fig = tmp_path / "aure"
    text, data, every = vidda_parallel(
        (kari.home, ["report", plan, "--plot", fig, "--plot-format", "svg"]),
        (kari.home, ["report", plan, "--json"]),
        (kari.home, ["report", "--all", "--json"]),
    )
    assert "Phases, planned vs actual" in text.stdout and "Events per month:" in text.stdout
    assert "Oppstart og forankring" in text.stdout and "####" in text.stdout  # the Gantt
    report = json.loads(data.stdout)
    assert report["phases"][0]["start_slip_days"] == 6
    assert report["participants"] == {"administration": 4, "politicians": 19}
    assert report["activities"]["by_kind"]["workshop"] == 1
    assert any(g["field"] == "societal_goal" for g in report["goals"])
    assert report["actor_analysis"][-1]["actors"] == 8
    assert [r["plan"] for r in json.loads(every.stdout)] == [plan]
    for name in ("timeline", "gantt"):
        assert (tmp_path / f"aure-{name}.svg").read_text().lstrip().startswith("<?xml")


def test_consent_withdrawn_exports_counts_only_and_says_so(
    new_device: NewDevice, tmp_path: Path
) -> None:
    dev = new_device("Bjørn Ávži")
    plan = dev.json("plan", "new", "--municipality", "Loppa", "--title", "Loppa")["plan"]
    dev.run("plan", "consent", plan, "given", "--note", "PS 21/3")
    dev.run("plan", "consent", plan, "withdrawn")
    shown = dev.json("plan", "show", plan)
    assert shown["fields"]["research_consent"] == "withdrawn"
    proc = dev.run("export", "--out", tmp_path / "x", "--json")
    assert "no research consent (withdrawn)" in proc.stderr and "aggregate" in proc.stderr
    # No plan may be studied, so the membership log (everyone's name) is
    # counted only as well: no event and no name in any file.
    assert "the membership log: no exported plan has research consent" in proc.stderr
    assert json.loads(proc.stdout)["aggregated_plans"] == sorted([plan, dev.workspace])
    assert (tmp_path / "x" / "events.jsonl").read_text("utf-8") == ""
    files = [p for p in (tmp_path / "x").rglob("*") if p.is_file()]
    assert not any("Bjørn".encode() in p.read_bytes() for p in files)
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    entry = next(p for p in manifest["plans"] if p["plan"] == plan)
    assert entry["content"] == "aggregates" and entry["consent"] == "withdrawn"
    entry = next(p for p in manifest["plans"] if p["plan"] == dev.workspace)
    assert entry["content"] == "aggregates" and entry["consent"] is None
    assert vidda(None, "verify-export", tmp_path / "x").returncode == 0
    said = dev.run("export", "--out", tmp_path / "y").stdout.splitlines()[0]
    assert said.startswith("exported 0 events of 0 plan(s) (0 chains) and counts of 1 plan(s) ")


def test_pseudonymised_export_and_its_proof_from_the_home(kari: Device, tmp_path: Path) -> None:
    key = tmp_path / "keys" / "aure.key"
    one, two = tmp_path / "one", tmp_path / "two"
    made = kari.run("export", "--pseudonymise", "--export-key", key, "--out", one)
    assert "made a new pseudonym key" in made.stderr and key.exists()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    kari.run("export", "--pseudonymise", "--export-key", key, "--out", two)
    assert (one / "csv" / "members.csv").read_text() == (two / "csv" / "members.csv").read_text()
    for folder in (one, two):
        text = "".join(p.read_text("utf-8") for p in folder.rglob("*.csv"))
        assert "Kari Nordmann" not in text and kari.device not in text
    plain = vidda(None, "verify-export", one)
    assert plain.returncode == 0 and "no signature can be checked" in plain.stderr
    proof = kari.json("verify-export", one, "--against-home", "--export-key", key)
    assert proof["ok"] and len(proof["rederived"]) == proof["files"]
    wrong = tmp_path / "wrong.key"
    wrong.write_text("00" * 32)
    bad = kari.run("verify-export", one, "--against-home", "--export-key", wrong, check=False)
    assert bad.returncode == 2 and "not the one the export was made with" in bad.stderr
    anon = tmp_path / "anon"
    kari.run("export", "--anonymise", "--out", anon)
    assert kari.json("verify-export", anon, "--against-home")["ok"]


def test_against_home_ignores_server_acks_that_arrived_after_the_export(
    new_device: NewDevice, tmp_path: Path
) -> None:
    """Server-received times come from acks this device records when it
    syncs. An ack that arrives after an export (the adviser syncs later)
    must not make deriving that export again differ from it."""
    dev = new_device("Ánde Ŋuolja")
    plan = dev.json("plan", "new", "--municipality", "Kautokeino", "--title", "Dálvi")["plan"]
    dev.run("plan", "consent", plan, "given")
    dev.run("plan", "set", plan, "societal_goal", "Eallin")
    out = tmp_path / "export"
    dev.run("export", "--out", out)

    def server_times(folder: Path) -> set[object]:
        lines = (folder / "events.jsonl").read_text("utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        return {r["server_received_time"] for r in rows if r["plan"] == plan}

    assert server_times(out) == {None}
    # What the sync client writes when the server acknowledges the pushes.
    seqs = db_rows(
        dev.home,
        "SELECT max(seq) FROM events e JOIN devices d USING (device_no) "
        "JOIN plans p USING (plan_no) WHERE p.plan_id=? AND d.device_key=?",
        (bytes.fromhex(plan), bytes.fromhex(dev.device)),
    )
    conn = sqlite3.connect(dev.home / "vidda.db")
    with conn:
        conn.execute(
            "INSERT INTO sync_acks(server_id, plan_id, device_key, first_seq, last_seq, "
            "received_ms) VALUES (?,?,?,?,?,?)",
            (
                b"s" * 16,
                bytes.fromhex(plan),
                bytes.fromhex(dev.device),
                1,
                seqs[0][0],
                1_700_000_000_000,
            ),
        )
    conn.close()
    later = tmp_path / "later"
    dev.run("export", "--out", later)
    assert None not in server_times(later)
    assert dev.json("verify-export", out, "--against-home")["ok"]
    assert dev.json("verify-export", later, "--against-home")["ok"]
