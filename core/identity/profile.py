"""The device profile: which workspace this device belongs to, and who uses it."""

from __future__ import annotations

from pathlib import Path

import msgspec

from core.identity.atomic_file import write_atomic


class Profile(msgspec.Struct, kw_only=True):
    workspace: str  # hex UUIDv7
    device: str  # hex Ed25519 public key
    name: str  # display name of the person behind the device
    created: str  # ISO time
    server_url: str | None = None  # remembered by `vidda sync --server URL`
    admins: list[str] = []  # the workspace's admin device keys (hex), as last learned


class ProfileError(Exception):
    pass


def save_profile(path: Path, profile: Profile) -> None:
    write_atomic(Path(path), msgspec.json.format(msgspec.json.encode(profile)) + b"\n", 0o600)


def load_profile(path: Path) -> Profile:
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=Profile)
    except FileNotFoundError:
        raise ProfileError(f"no vidda workspace at {path.parent}; run `vidda init` first") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProfileError(f"profile {path} is damaged: {exc}") from None
