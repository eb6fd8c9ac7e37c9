"""`vidda export` and `vidda verify-export` as a researcher runs them: real
processes on a real home with the Aure demo plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .cli_helpers import Device, NewDevice, assert_one_line_error, vidda, vidda_env, vidda_json


@pytest.fixture
def kari(new_device: NewDevice) -> Device:
    dev = new_device("Kari Nordmann")
    dev.run("demo-data")
    plan = dev.json("plan", "new", "--municipality", "Vardø", "--title", "Vardø sentrum")["plan"]
    dev.run("plan", "set", plan, "goal", "Flere bor i Vardø i 2030")
    dev.run("plan", "consent", plan, "given", "--note", "PS 21/12")
    return dev


def test_export_then_verify_export_round_trip(kari: Device, tmp_path: Path) -> None:
    out = tmp_path / "export"
    summary = kari.json("export", "--format", "jsonl,csv", "--format", "sqlite", "--out", out)
    assert summary["formats"] == ["jsonl", "csv", "sqlite"]
    assert summary["plans"] == 2 and summary["events"] > 40
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["content_sha256"] == summary["content_sha256"]
    assert manifest["command"][:2] == ["vidda", "--home"]
    assert manifest["counts"]["events"] == summary["events"]
    assert sorted(manifest["admins"]) == [kari.device]

    checked = vidda_json(None, "verify-export", out)
    assert checked["ok"] and checked["problems"] == []
    assert len(checked["rederived"]) == len(manifest["files"])
    plain = vidda(None, "verify-export", out)
    assert plain.stdout.startswith("verify-export ok:") and plain.stderr == ""


def test_export_of_one_plan_keeps_stdout_clean(kari: Device, tmp_path: Path) -> None:
    plans = kari.json("plan", "list")
    vardo = next(p["plan"] for p in plans if p["municipality"] == "Vardø")
    out = tmp_path / "one"
    proc = kari.run("export", vardo, "--out", out)
    assert proc.stderr == ""  # not a terminal, and quick: no progress lines
    assert proc.stdout.splitlines()[0].startswith("exported ")
    lines = (out / "events.jsonl").read_text("utf-8").splitlines()
    assert {json.loads(line)["plan"] for line in lines} == {vardo, kari.workspace}


def test_verify_export_names_a_changed_line_and_fails(kari: Device, tmp_path: Path) -> None:
    out = tmp_path / "export"
    kari.run("export", "--out", out)
    path = out / "csv" / "sub_goal.csv"
    text = (out / "csv" / "plan.csv").read_text("utf-8")
    (out / "csv" / "plan.csv").write_text(text.replace("Aure", "Aura", 1), "utf-8")
    (out / "events.jsonl").write_text(
        "\n".join((out / "events.jsonl").read_text("utf-8").splitlines()[:-1]) + "\n", "utf-8"
    )
    path.unlink()
    proc = vidda(None, "verify-export", out, check=False)
    assert proc.returncode == 1
    assert "csv/sub_goal.csv: missing_file" in proc.stderr
    assert "events.jsonl" in proc.stderr and "missing_events" in proc.stderr
    assert proc.stdout.startswith("verify-export FAILED")
    report = vidda_json(None, "verify-export", out, check=False)
    assert not report["ok"]
    assert {p["file"] for p in report["problems"]} >= {"csv/sub_goal.csv", "events.jsonl"}


def test_export_errors_are_one_line(kari: Device, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert_one_line_error(kari.run("export", "--out", busy, check=False), 1, "not an empty folder")
    assert_one_line_error(
        kari.run("export", "--format", "xlsx", "--out", tmp_path / "x", check=False),
        2,
        "unknown format",
    )
    assert_one_line_error(
        vidda(None, "verify-export", tmp_path / "nowhere", check=False), 1, "not a folder"
    )


def test_parquet_without_pyarrow_says_how_to_get_it(kari: Device, tmp_path: Path) -> None:
    """A `pyarrow` that cannot be imported stands in for one not installed."""
    shadow = tmp_path / "shadow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no pyarrow here')\n")
    env = vidda_env(PYTHONPATH=str(tmp_path / "shadow"))
    proc = vidda(
        kari.home, "export", "--format", "parquet", "--out", tmp_path / "p", env=env, check=False
    )
    assert_one_line_error(proc, 1, "pip install 'vidda[research]'")
    assert not (tmp_path / "p").exists()
