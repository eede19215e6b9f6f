"""The machine's identity: a random secret key per app, and the machine id derived from it.

The key (32 random bytes, ``machine_key``, 0600) never leaves the machine except inside a
request body over TLS or loopback, as the proof that the request comes from this machine; the
machine id people see (``status``, ``show``, ``view``) is a hash of it formatted as a UUID, so
the id reveals nothing and the server checks ``machine_id == derive_id(machine_key)`` without
storing anything new. Nobody can send reports or a deletion request for an id without its key.

    id = UUIDv8 from the first 16 bytes of SHA-256(b"telemetry-rollup machine id\\n" + key)

Imported by the sender, the controls and the CLI, never by the exit hook (``_telemetry``'s
exit path appends counts only). :func:`derive_id` and :func:`redact` are pure; the rest reads
and writes the key file through :mod:`_fs` (atomic writes, 0600, no symlink followed).

The key file is JSON: ``{"key": "<64 hex>"}``, plus ``"legacy_id"`` when the app's directory
held a random id of wire format 1 (``machine_id``) before the key was made: that id is kept so
``off`` can ask the server to forget what was sent under it too.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any, NamedTuple

KEY_FILE = "machine_key"
LEGACY_ID_FILE = "machine_id"
_DOMAIN = b"telemetry-rollup machine id\n"
_KEY_HEX = re.compile(r"[0-9a-f]{64}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Shown in place of the key wherever a body is printed (same length, so sizes stay true).
REDACTED = "(redacted)".ljust(64, "*")
_KEY_IN_BODY = re.compile(rb'("machine_key"\s*:\s*")[0-9a-fA-F]*(")')


class Identity(NamedTuple):
    key: str  # 64 lowercase hex characters: the secret
    machine_id: str  # derive_id(key): what people see and the server stores
    legacy_id: str | None = None  # a wire-format-1 random id this app used before the key


def derive_id(key_hex: str) -> str:
    """The machine id of a key: a version-8 UUID from SHA-256 (TELEMETRY.md gives the rule)."""
    digest = bytearray(hashlib.sha256(_DOMAIN + bytes.fromhex(key_hex)).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: "custom", RFC 9562
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_key(text: object) -> bool:
    return isinstance(text, str) and _KEY_HEX.fullmatch(text) is not None


def is_derived_id(machine_id: str) -> bool:
    """Whether an id has the form of a derived one (version 8); random ids of format 1 are version 4."""
    return _UUID.fullmatch(machine_id) is not None and machine_id[14] == "8"


def redact(body: bytes) -> bytes:
    """A request body with its ``machine_key`` value replaced by :data:`REDACTED` (same length)."""
    return _KEY_IN_BODY.sub(lambda m: m.group(1) + REDACTED.encode() + m.group(2), body)


def _path(directory: Any, name: str) -> Any:
    # The same kind of path the app store uses (a Path, or a str), so _fs takes it either way.
    return directory / name if hasattr(directory, "joinpath") else os.path.join(directory, name)


def _read(directory: Any) -> Identity | None:
    import json

    from . import _fs

    data = _fs.read_capped(_path(directory, KEY_FILE), 4096)
    try:
        obj = json.loads(data) if data else None
    except ValueError:
        return None
    if not isinstance(obj, dict) or not is_key(obj.get("key")):
        return None
    legacy = obj.get("legacy_id")
    legacy_id = legacy if isinstance(legacy, str) and _UUID.fullmatch(legacy) else None
    return Identity(obj["key"], derive_id(obj["key"]), legacy_id)


def _legacy_id(directory: Any) -> str | None:
    from . import _fs

    data = _fs.read_capped(_path(directory, LEGACY_ID_FILE), 64)
    text = data.decode("ascii", "replace").strip() if data else ""
    return text if _UUID.fullmatch(text) and not is_derived_id(text) else None


def _write(directory: Any, key: str, legacy_id: str | None) -> Identity:
    import json

    from . import _fs

    obj: dict[str, str] = {"key": key}
    if legacy_id is not None:
        obj["legacy_id"] = legacy_id
    _fs.ensure_dir(directory)
    # Atomic, not fsynced (like the id file it replaces): after a power loss the worst case is
    # a new key, i.e. a new machine; and a first send that never waits for the disk.
    _fs.atomic_write(_path(directory, KEY_FILE), json.dumps(obj).encode() + b"\n")
    # The random id of format 1 now lives in the key file (for off's deletion request).
    try:
        os.unlink(_path(directory, LEGACY_ID_FILE))
    except OSError:
        pass
    return Identity(key, derive_id(key), legacy_id)


def load(directory: Any, *, create: bool) -> Identity | None:
    """The app's identity; with ``create``, a new key when there is none (call it holding the
    sender lock, so two senders cannot make two keys)."""
    found = _read(directory)
    if found is not None or not create:
        return found
    return _write(directory, os.urandom(32).hex(), _legacy_id(directory))


def reset(directory: Any) -> Identity:
    """A new key, so a new machine id (``reset-id``, or the server refused this machine). The
    format-1 id, if any, is carried over: off still asks to forget it."""
    old = _read(directory)
    legacy = old.legacy_id if old is not None else _legacy_id(directory)
    return _write(directory, os.urandom(32).hex(), legacy)


def current_id(directory: Any) -> str | None:
    """The id to show (status, show, view): derived from the key, else a format-1 id, else None."""
    found = _read(directory)
    if found is not None:
        return found.machine_id
    return _legacy_id(directory)
