"""Two devices, one workspace, no network: conflicts and bundles, end to end.

Anne and Bjørn each have a home (`init`, then `init --workspace`); they edit
offline and swap bundle files as if on a USB stick.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.sync.bundle import read_bundle

from .cli_helpers import (
    Device,
    assert_one_line_error,
    event_count,
    init_device,
    plan_ids,
    stored_raws,
    unique_prefix,
    vidda_parallel,
)

ANNE_RESULT = "Det er skapt engasjement for sentrum blant unge og eldre."
BJORN_RESULT = "Kommunen har gjennomført brede medvirkningsprosesser i alle grender."
RESOLVED = "Det er skapt engasjement, og kommunen har gjennomført brede prosesser."


@dataclass
class Pair:
    anne: Device
    bjorn: Device
    plan: str
    first_bundle: Path  # the plan as Anne created it
    first_import: dict[str, Any]
    dir: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    root = tmp_path_factory.mktemp("sync")
    anne = init_device(root / "anne", "Anne Adviser")
    bjorn = init_device(root / "bjorn", "Bjørn Ávži", workspace=anne.workspace)
    plan = anne.run("plan", "new", "--municipality", "Aure", "--title", "Et samlet Aure").stdout
    plan = plan.strip()
    first = root / "anne-0.bundle"
    exported = anne.json("bundle", "export", "--out", first)
    # The plan, and the workspace's membership log (Anne's device is its admin).
    assert (exported["plans"], exported["events"]) == (2, 8)
    imported = bjorn.json("bundle", "import", first)
    assert imported["accepted"] == 8
    return Pair(anne, bjorn, plan, first, imported, root)


def test_import_the_same_bundle_twice_adds_nothing(pair: Pair) -> None:
    assert pair.first_import["bundle_signature_valid"] is True
    assert pair.first_import["exporter"] == pair.anne.device
    before = stored_raws(pair.bjorn.home)
    (again,) = vidda_parallel((pair.bjorn.home, ["bundle", "import", pair.first_bundle, "--json"]))
    report = json.loads(again.stdout)
    assert (report["events"], report["accepted"], report["duplicates"]) == (8, 0, 8)
    assert report["rejected"] == [] and report["evidence"] == []
    assert stored_raws(pair.bjorn.home) == before


# --- offline edits on both sides, bundles swapped -------------------------------------------


@dataclass
class Swapped:
    shows: dict[str, str] = field(default_factory=dict)  # replica -> `plan show --json` stdout
    phase: str = ""  # Anne edits it while Bjørn removes it
    actor: str = ""
    carl: Device | None = None  # a third replica, which has imported both bundles


@pytest.fixture(scope="module")
def swapped(pair: Pair) -> Swapped:
    a, b, p, root = pair.anne, pair.bjorn, pair.plan, pair.dir
    view = json.loads(a.run("plan", "show", p, "--json").stdout)
    sw = Swapped()
    sw.phase = view["phases"][2]["id"]
    phase_ref = unique_prefix(sw.phase, [ph["id"] for ph in view["phases"]] + [p])
    # Offline, at the same time: both edit the desired result; Anne schedules a
    # phase that Bjørn removes; Bjørn adds an actor.
    # (Bjørn's first write goes alone: see test_cli_durability for first writes at once.)
    vidda_parallel(
        (a.home, ["plan", "set", p, "desired_result", ANNE_RESULT]),
        (a.home, ["plan", "update", p, phase_ref, "--status", "ongoing",
                  "--planned-start", "2021-04-06"]),
        (b.home, ["plan", "set", p, "desired_result", BJORN_RESULT]),
    )  # fmt: skip
    _, actor = vidda_parallel(
        (b.home, ["plan", "remove", p, phase_ref]),
        (b.home, ["plan", "add", p, "actor", "--name", "Grendelagene", "--category",
                  "voluntary"]),
    )  # fmt: skip
    sw.actor = actor.stdout.strip()
    xa, xb = root / "anne-1.bundle", root / "bjorn-1.bundle"
    vidda_parallel(
        (a.home, ["bundle", "export", "--out", xa]), (b.home, ["bundle", "export", "--out", xb])
    )
    # Two more replicas of the workspace (byte copies of one fresh home) take the
    # two bundles in opposite orders.
    carl = init_device(root / "carl", "Carl", workspace=a.workspace)
    carl2 = carl.clone(root / "carl2")
    vidda_parallel(
        (a.home, ["bundle", "import", xb]),
        (b.home, ["bundle", "import", xa]),
        (carl.home, ["bundle", "import", xa]),
        (carl2.home, ["bundle", "import", xb]),
    )
    vidda_parallel(
        (carl.home, ["bundle", "import", xb]),
        (carl2.home, ["bundle", "import", xa]),
    )
    shows = vidda_parallel(*((d.home, ["plan", "show", p, "--json"]) for d in (a, b, carl, carl2)))
    sw.carl = carl
    sw.shows = dict(zip(["anne", "bjorn", "carl", "carl2"], (s.stdout for s in shows), strict=True))
    return sw


def test_conflict_is_shown_identically_with_both_values_and_authors(
    pair: Pair, swapped: Swapped
) -> None:
    assert swapped.shows["anne"] == swapped.shows["bjorn"]
    view = json.loads(swapped.shows["anne"])
    assert view["plan_conflicts"] == ["desired_result"]
    (conflict,) = [c for c in view["conflicts"] if c["field"] == "desired_result"]
    assert conflict["kind"] == "plan" and conflict["entity"] == pair.plan
    assert sorted((v["value"], v["author"]) for v in conflict["values"]) == sorted(
        [(ANNE_RESULT, pair.anne.device), (BJORN_RESULT, pair.bjorn.device)]
    )
    # The displayed value is one of the two, the same on both replicas.
    assert view["fields"]["desired_result"] in (ANNE_RESULT, BJORN_RESULT)


def test_bundles_in_either_order_give_the_same_plan(swapped: Swapped) -> None:
    shows = swapped.shows
    assert shows["carl"] == shows["carl2"]
    assert shows["anne"] == shows["carl"]
    view = json.loads(shows["carl"])
    assert [a["id"] for a in view["actors"]] == [swapped.actor]
    assert swapped.phase in [e["id"] for e in view["removed"]]
    assert swapped.phase not in [ph["id"] for ph in view["phases"]]
    edited = {(e["entity"], e["field"], e["value"]) for e in view["edited_after_removal"]}
    assert edited == {
        (swapped.phase, "status", "ongoing"),
        (swapped.phase, "planned_start", "2021-04-06"),
    }


def test_resolve_on_one_device_then_bundle_back_clears_the_conflict(
    pair: Pair, swapped: Swapped
) -> None:
    a, b, p = pair.anne, pair.bjorn, pair.plan
    plan_ref = unique_prefix(p, plan_ids(json.loads(swapped.shows["bjorn"])))
    b.run("plan", "resolve", p, plan_ref, "desired_result", RESOLVED)
    back = pair.dir / "bjorn-resolved.bundle"
    b.run("bundle", "export", "--out", back)
    a.run("bundle", "import", back)
    show_a, show_b, log_a = vidda_parallel(
        (a.home, ["plan", "show", p, "--json"]),
        (b.home, ["plan", "show", p, "--json"]),
        (a.home, ["log", p, "--json"]),
    )
    assert show_a.stdout == show_b.stdout
    view = json.loads(show_a.stdout)
    assert view["fields"]["desired_result"] == RESOLVED
    assert "desired_result" not in view["plan_conflicts"]
    assert [c for c in view["conflicts"] if c["field"] == "desired_result"] == []
    (row,) = [r for r in json.loads(log_a.stdout) if r["type"] == "ConflictResolved"]
    assert sorted(row["old"]) == sorted([ANNE_RESULT, BJORN_RESULT])
    assert (row["new"], row["author"]) == (RESOLVED, b.device)


# --- bundles --------------------------------------------------------------------------------


def test_export_since_vector_sends_only_what_the_other_side_lacks(pair: Pair) -> None:
    a, b, p = pair.anne, pair.bjorn, pair.plan
    vector = pair.dir / "bjorn.vector"
    vidda_parallel(
        (a.home, ["plan", "set", p, "who_are_we", "Ei kystkommune med mange grender."]),
        (a.home, ["plan", "add", p, "note", "--target", "-", "--text", "Ny etter vektoren"]),
        (b.home, ["bundle", "vector", "--out", vector]),
    )
    lacking = stored_raws(a.home) - stored_raws(b.home)
    assert len(lacking) >= 2
    out = pair.dir / "for-bjorn.bundle"
    summary = a.json("bundle", "export", "--since-vector", vector, "--out", out)
    assert summary["events"] == len(lacking)
    bundle, signed_ok = read_bundle(out.read_bytes())
    assert signed_ok and set(bundle.events) == lacking
    report = b.json("bundle", "import", out)
    assert (report["accepted"], report["duplicates"]) == (len(lacking), 0)
    assert stored_raws(a.home) <= stored_raws(b.home)


def _flip_inside(data: bytes, marker: str) -> bytes:
    """Flip one bit of the (unique) marker text inside a bundle file."""
    needle = marker.encode()
    at = data.find(needle)
    assert at > 0 and data.find(needle, at + 1) == -1
    out = bytearray(data)
    out[at + len(needle) // 2] ^= 0x01  # ASCII stays ASCII: still decodes, no longer signed
    return bytes(out)


def _event_with(bundle: Path, marker: str) -> bytes:
    (raw,) = [r for r in read_bundle(bundle.read_bytes())[0].events if marker.encode() in r]
    return raw


def test_a_flipped_byte_rejects_that_event_and_the_rest_lands(
    pair: Pair, swapped: Swapped, tmp_path: Path
) -> None:
    a, p = pair.anne, pair.plan
    marker = "Siste endring fra Anne"
    a.run("plan", "set", p, "societal_goal", marker)
    good = tmp_path / "all.bundle"
    a.run("bundle", "export", "--out", good)
    damaged = tmp_path / "damaged.bundle"
    damaged.write_bytes(_flip_inside(good.read_bytes(), marker))
    flipped_id = hashlib.sha256(_event_with(damaged, marker[:8])).hexdigest()
    total = len(read_bundle(good.read_bytes())[0].events)

    carl = swapped.carl  # has part of it already
    assert carl is not None
    before = stored_raws(carl.home)
    lacking = stored_raws(a.home) - before
    assert len(lacking) >= 2
    (proc,) = vidda_parallel((carl.home, ["bundle", "import", damaged, "--json"]), check=False)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["bundle_signature_valid"] is False
    assert [(r["event"], r["reason"]) for r in report["rejected"]] == [
        (flipped_id, "bad_signature")
    ]
    assert report["evidence"] == []
    assert report["duplicates"] == total - len(lacking)
    assert report["accepted"] == len(lacking) - 1
    after = stored_raws(carl.home)
    assert before <= after and len(after) == total - 1  # nothing stored was lost
    assert after == stored_raws(a.home) - {_event_with(good, marker)}
    (verify,) = vidda_parallel((carl.home, ["verify", "--json"]), check=False)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True


def test_a_flipped_byte_mid_chain_is_not_mistaken_for_a_fork(pair: Pair, tmp_path: Path) -> None:
    """One damaged event in the middle of a chain must not be kept as "fork"
    evidence, nor freeze the honest author's chain: the events after it just
    cannot land yet, and the undamaged bundle must later land everything."""
    a, b, p = pair.anne, pair.bjorn, pair.plan
    m1, m2, m3 = "Tittel fra Anne", "Samfunnsmaal fra Anne", "Resultat fra Anne"
    # One command, three events with consecutive seqs: title, goal, result.
    a.run("plan", "update", p, p, "--title", m1, "--societal-goal", m2, "--desired-result", m3)
    good = tmp_path / "good.bundle"
    a.run("bundle", "export", "--out", good)
    damaged = tmp_path / "damaged.bundle"
    damaged.write_bytes(_flip_inside(good.read_bytes(), m2))
    ids = {m: hashlib.sha256(_event_with(good, m)).hexdigest() for m in (m1, m3)}
    bad_id = hashlib.sha256(_event_with(damaged, m2[:8])).hexdigest()

    before = stored_raws(b.home)
    lacking = stored_raws(a.home) - before
    (proc,) = vidda_parallel((b.home, ["bundle", "import", damaged, "--json"]), check=False)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["evidence"] == [], report["evidence"]
    rejected = {r["event"]: r["reason"] for r in report["rejected"]}
    assert rejected.get(bad_id) == "bad_signature", report["rejected"]
    # Everything Bjørn lacked lands except the damaged event and the one after it.
    expected = lacking - {_event_with(good, m2), _event_with(good, m3)}
    assert ids[m1] in {hashlib.sha256(r).hexdigest() for r in expected}
    assert report["accepted"] == len(expected)
    assert stored_raws(b.home) - before == expected

    verify, fixed = vidda_parallel(
        (b.home, ["verify", "--json"]), (b.home, ["bundle", "import", good, "--json"]), check=False
    )
    assert json.loads(verify.stdout)["frozen_chains"] == 0
    assert fixed.returncode == 0, fixed.stdout
    fixed_report = json.loads(fixed.stdout)
    assert fixed_report["accepted"] == 2 and fixed_report["evidence"] == []  # m2, m3
    assert stored_raws(a.home) <= stored_raws(b.home)


def test_a_file_that_is_not_a_bundle_gives_one_line(pair: Pair, tmp_path: Path) -> None:
    text = tmp_path / "notat.txt"
    text.write_text("Dette er ikke en bunt.\n", encoding="utf-8")
    data = pair.first_bundle.read_bytes()
    truncated = tmp_path / "truncated.bundle"
    truncated.write_bytes(data[: len(data) // 2])
    before = event_count(pair.bjorn.home)
    results = vidda_parallel(
        (pair.bjorn.home, ["bundle", "import", text]),
        (pair.bjorn.home, ["bundle", "import", truncated]),
        (pair.bjorn.home, ["bundle", "import", tmp_path / "finnes-ikke.bundle"]),
        check=False,
    )
    needles = ["not a vidda bundle", "bundle", "cannot read"]
    for proc, needle in zip(results, needles, strict=True):
        assert_one_line_error(proc, 1, needle)
    assert event_count(pair.bjorn.home) == before
