"""A device's data folder: profile, encrypted key, and the local event log.

Layout of `HOME` (from `--home`, `VIDDA_HOME`, or the platform's user data
folder)::

    profile.json   workspace id, device public key, person's display name
    device.key     Ed25519 key, scrypt + AES-GCM encrypted, mode 0600
    vidda.db       the SQLite event log (WAL, synchronous=FULL)
"""

from __future__ import annotations

import getpass
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from core.events.bodies import MemberAdded
from core.events.ids import new_uuid7, parse_hex
from core.identity.keyfile import DeviceKey, KeyFileError, load_key, save_key
from core.identity.membership import Membership
from core.identity.profile import Profile, load_profile, save_profile
from core.store.event_log import EventLog


class HomeError(Exception):
    pass


def resolve_home(arg: str | None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("VIDDA_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("vidda", appauthor=False))


def ask_passphrase(*, confirm: bool) -> str:
    """The passphrase from VIDDA_PASSPHRASE, else asked on the terminal."""
    env = os.environ.get("VIDDA_PASSPHRASE")
    if env is not None:
        if not env:
            raise HomeError("VIDDA_PASSPHRASE is set but empty")
        return env
    if not sys.stdin.isatty():
        raise HomeError("no passphrase: set VIDDA_PASSPHRASE or run in a terminal")
    first = getpass.getpass("Passphrase for this device's key: ")
    if not first:
        raise HomeError("the passphrase must not be empty")
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise HomeError("the passphrases did not match")
    return first


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.profile_path = path / "profile.json"
        self.key_path = path / "device.key"
        self.db_path = path / "vidda.db"
        self._key: DeviceKey | None = None

    @property
    def initialised(self) -> bool:
        return self.profile_path.exists()

    def profile(self) -> Profile:
        return load_profile(self.profile_path)

    async def init(
        self, name: str | None, workspace: str | None, passphrase: str | None = None
    ) -> Profile:
        """Create the device key, profile and empty log. Refuses to overwrite."""
        if self.initialised:
            prof = self.profile()
            raise HomeError(
                f"{self.path} is already set up (workspace {prof.workspace}, device {prof.device})"
            )
        if self.key_path.exists():
            raise HomeError(
                f"{self.key_path} exists but {self.profile_path.name} does not (an interrupted "
                "`vidda init`?); move device.key away to set up again"
            )
        ws = parse_hex(workspace, 16, "workspace id") if workspace else new_uuid7()
        person = (name or os.environ.get("VIDDA_NAME") or getpass.getuser()).strip()
        if not person:
            raise HomeError("the display name must not be empty")
        if passphrase is None:
            passphrase = ask_passphrase(confirm=True)
        elif not passphrase:
            raise HomeError("the passphrase must not be empty")
        key = DeviceKey.generate()
        self.path.mkdir(parents=True, exist_ok=True)
        save_key(self.key_path, key, passphrase)
        prof = Profile(
            workspace=ws.hex(),
            device=key.public_key.hex(),
            name=person,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        log = await EventLog.open(self.db_path, workspace=ws)
        try:
            if not workspace:
                # A new workspace: this device is its first admin, and says so
                # in the workspace's signed membership log.
                prof.admins = [key.public_key.hex()]
                await log.append(
                    key, ws, [MemberAdded(device=key.public_key, name=person, role="owner")]
                )
        finally:
            await log.close()
        save_profile(self.profile_path, prof)
        self._key = key
        return prof

    def signer(self, passphrase: str | None = None) -> DeviceKey:
        """The decrypted device key (asks for the passphrase once)."""
        if self._key is None:
            if passphrase is None:
                passphrase = ask_passphrase(confirm=False)
            try:
                self._key = load_key(self.key_path, passphrase)
            except KeyFileError as exc:
                raise HomeError(str(exc)) from None
            if self._key.public_key.hex() != self.profile().device:
                raise HomeError("device.key does not belong to this profile")
        return self._key

    @property
    def unlocked(self) -> bool:
        return self._key is not None

    def save_profile(self, profile: Profile) -> None:
        save_profile(self.profile_path, profile)

    async def membership(self, log: EventLog) -> Membership:
        """The workspace's members as this device's log knows them."""
        prof = self.profile()
        admins = [bytes.fromhex(a) for a in prof.admins]
        return Membership.of(log.workspace, admins, await log.events(log.workspace))

    async def open_log(self) -> EventLog:
        prof = self.profile()
        return await EventLog.open(self.db_path, workspace=bytes.fromhex(prof.workspace))
