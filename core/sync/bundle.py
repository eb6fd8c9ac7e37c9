"""Sync bundles: a signed file of events for places with no network at all.

File layout::

    b"VIDDA-BUNDLE\\x00\\x01"  magic + format version
    payload                    msgpack Bundle (array)
    signature                  Ed25519 over magic ‖ payload, by `exporter`

The bundle signature says who made the file; every event inside is still
verified on its own when imported, so a damaged or forged bundle can never
smuggle in an event its author did not sign.
"""

from __future__ import annotations

import msgspec

from core.events.envelope import Signer, signature_ok
from core.events.ids import DeviceKey, Uuid
from core.events.limits import MAX_EVENT_BYTES, SIGNATURE_LEN

MAGIC = b"VIDDA-BUNDLE\x00\x01"


class Bundle(msgspec.Struct, array_like=True, frozen=True):
    workspace: Uuid
    exporter: DeviceKey
    created_hlc: int
    since: dict[bytes, dict[bytes, int]]  # plan -> the vector the export was cut against
    events: list[bytes]


class BundleError(ValueError):
    pass


# `since` has bytes keys, which msgspec cannot sort (order=...); write_bundle
# sorts those dicts itself, so the encoding is still deterministic.
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Bundle)


def write_bundle(bundle: Bundle, signer: Signer) -> bytes:
    since = {p: dict(sorted(v.items())) for p, v in sorted(bundle.since.items())}
    payload = _encoder.encode(msgspec.structs.replace(bundle, since=since))
    return MAGIC + payload + signer.sign(MAGIC + payload)


def read_bundle(data: bytes) -> tuple[Bundle, bool]:
    """Decode a bundle; returns (bundle, signature_valid). Raises BundleError
    if the file is not a bundle at all."""
    if not data.startswith(MAGIC):
        raise BundleError("not a vidda bundle (bad magic)")
    if len(data) < len(MAGIC) + SIGNATURE_LEN + 1:
        raise BundleError("bundle is truncated")
    body, sig = data[:-SIGNATURE_LEN], data[-SIGNATURE_LEN:]
    try:
        bundle = _decoder.decode(body[len(MAGIC) :])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BundleError(f"bundle is damaged: {exc}") from None
    oversize = [i for i, raw in enumerate(bundle.events) if len(raw) > MAX_EVENT_BYTES]
    if oversize:
        raise BundleError(f"bundle holds {len(oversize)} oversize events")
    return bundle, signature_ok(body + sig, bundle.exporter)


def vectors_to_json(vectors: dict[bytes, dict[bytes, int]], workspace: bytes) -> bytes:
    doc = {
        "format": "vidda-vector",
        "workspace": workspace.hex(),
        "plans": {
            p.hex(): {d.hex(): s for d, s in sorted(v.items())} for p, v in sorted(vectors.items())
        },
    }
    return msgspec.json.format(msgspec.json.encode(doc)) + b"\n"


def vectors_from_json(data: bytes) -> tuple[bytes, dict[bytes, dict[bytes, int]]]:
    try:
        doc = msgspec.json.decode(data)
        if doc.get("format") != "vidda-vector":
            raise BundleError("not a vidda vector file")
        plans = {
            bytes.fromhex(p): {bytes.fromhex(d): int(s) for d, s in v.items()}
            for p, v in doc["plans"].items()
        }
        return bytes.fromhex(doc["workspace"]), plans
    except (msgspec.DecodeError, KeyError, ValueError, AttributeError, TypeError) as exc:
        raise BundleError(f"vector file is damaged: {exc}") from None
