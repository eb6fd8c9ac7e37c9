"""Fixtures for the end-to-end tests of the `vidda` command line.

The helpers themselves (running `vidda`, parsing `--json`, looking into a
store) live in `cli_helpers`, so test modules can import them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .cli_helpers import Device, NewDevice, init_device


@pytest.fixture
def new_device(tmp_path: Path) -> NewDevice:
    """Factory: `new_device("Kari", workspace=None)` → an initialised home."""
    count = 0

    def make(name: str, workspace: str | None = None) -> Device:
        nonlocal count
        count += 1
        return init_device(tmp_path / f"home{count}", name, workspace)

    return make
