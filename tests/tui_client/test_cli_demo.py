"""`vidda demo`: the newcomer's tour runs end to end on loopback."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_helpers import vidda, vidda_env


def test_the_demo_shows_the_conflict_resolves_it_and_ends_identical(tmp_path: Path) -> None:
    out = vidda(None, "demo", "--dir", tmp_path / "tour", "--json", env=vidda_env(passphrase=None))
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["identical"] is True
    # Four replicas: three devices and the server, all the same folded plan.
    assert set(summary["digests"]) == {"anne", "bjorn", "mari", "server"}
    assert len(set(summary["digests"].values())) == 1
    # The conflict was shown with both values and both authors' names.
    assert len(summary["conflict_values"]) == 2
    text = out.stdout
    assert "Anne Haugen" in text and "Mari Aune" in text
    for value in summary["conflict_values"]:
        assert value in text
    assert "open conflicts: 0" in text
    # The folders stay for the user to explore, and are real devices.
    listed = vidda(tmp_path / "tour" / "mari", "plan", "list", "--json", env=vidda_env())
    assert len(json.loads(listed.stdout)) == 1
