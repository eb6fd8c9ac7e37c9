"""Device keys encrypted at rest: scrypt-derived key + AES-256-GCM.

File format (JSON, mode 0600, written atomically)::

    {"format": "vidda-device-key", "version": 1,
     "public_key": hex, "kdf": {"name": "scrypt", "n": .., "r": .., "p": .., "salt": hex},
     "nonce": hex, "ciphertext": hex}

The AES-GCM associated data binds the header (format, version, public key,
KDF parameters), so swapping any of it makes decryption fail. The
plaintext is the 32-byte Ed25519 private seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from core.identity.atomic_file import write_atomic

FORMAT = "vidda-device-key"
VERSION = 1
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


class KeyFileError(Exception):
    """The key file is missing, damaged, or the passphrase is wrong."""


class DeviceKey:
    """A device's Ed25519 signing key. Satisfies `core.events.envelope.Signer`."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, payload: bytes) -> bytes:
        return self._private.sign(payload)


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _aad(header: dict[str, object]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def save_key(path: Path, key: DeviceKey, passphrase: str, *, scrypt_n: int = SCRYPT_N) -> None:
    """Encrypt `key` under `passphrase` and write it atomically with mode 0600."""
    if not passphrase:
        raise KeyFileError("the passphrase must not be empty")
    salt = os.urandom(16)
    header: dict[str, object] = {
        "format": FORMAT,
        "version": VERSION,
        "public_key": key.public_key.hex(),
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
    }
    nonce = os.urandom(12)
    secret = _kdf(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(secret).encrypt(nonce, key.seed(), _aad(header))
    doc = dict(header, nonce=nonce.hex(), ciphertext=ciphertext.hex())
    write_atomic(Path(path), json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)


def read_public_key(path: Path) -> bytes:
    """The public key stored in the key file's header (no passphrase needed)."""
    return bytes.fromhex(str(_read_doc(Path(path))["public_key"]))


def _read_doc(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"no device key at {path}; run `vidda init` first") from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"device key file {path} is unreadable: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeyFileError(f"{path} is not a vidda device key file")
    if doc.get("version") != VERSION:
        raise KeyFileError(f"{path}: unsupported key file version {doc.get('version')!r}")
    return doc


def load_key(path: Path, passphrase: str) -> DeviceKey:
    """Decrypt the key file. A wrong passphrase raises `KeyFileError`."""
    doc = _read_doc(Path(path))
    try:
        kdf = doc["kdf"]
        assert isinstance(kdf, dict)
        header: dict[str, object] = {k: doc[k] for k in ("format", "version", "public_key", "kdf")}
        secret = _kdf(
            passphrase, bytes.fromhex(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        )
        seed = AESGCM(secret).decrypt(
            bytes.fromhex(str(doc["nonce"])), bytes.fromhex(str(doc["ciphertext"])), _aad(header)
        )
    except InvalidTag:
        raise KeyFileError("wrong passphrase for the device key") from None
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise KeyFileError(f"device key file {path} is damaged: {exc}") from None
    key = DeviceKey.from_seed(seed)
    if key.public_key.hex() != doc["public_key"]:
        raise KeyFileError(f"device key file {path} is damaged: public key mismatch")
    return key
