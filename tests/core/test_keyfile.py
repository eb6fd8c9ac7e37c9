import json
import os
import stat
from pathlib import Path

import pytest

from core.identity.keyfile import DeviceKey, KeyFileError, load_key, read_public_key, save_key


def test_round_trip_mode_0600_and_no_leftovers(tmp_path: Path) -> None:
    key = DeviceKey.generate()
    path = tmp_path / "keys" / "device.key"
    save_key(path, key, "rett passord", scrypt_n=2**12)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(path.parent) == ["device.key"]
    assert key.seed().hex() not in path.read_text()
    loaded = load_key(path, "rett passord")
    assert loaded.public_key == key.public_key == read_public_key(path)
    assert loaded.sign(b"x") == key.sign(b"x")


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    save_key(path, DeviceKey.generate(), "a", scrypt_n=2**12)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(path, "b")


def test_tampered_header_or_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "device.key"
    save_key(path, DeviceKey.generate(), "a", scrypt_n=2**12)
    doc = json.loads(path.read_text())
    doc["public_key"] = DeviceKey.generate().public_key.hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError):
        load_key(path, "a")
    path.write_text("not json")
    with pytest.raises(KeyFileError, match="unreadable"):
        load_key(path, "a")
    with pytest.raises(KeyFileError, match="vidda init"):
        load_key(tmp_path / "missing.key", "a")
    with pytest.raises(KeyFileError, match="empty"):
        save_key(tmp_path / "x.key", DeviceKey.generate(), "")
