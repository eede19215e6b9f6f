"""The app directory: locked appends, spill files, the outbox generations, and small state files.

Layout (all below ``<root>/<app>/``; paths are ``str``, see ``_fs``)::

    config.json        endpoint, app version, allowlist, env prefix, default (written at the first persist)
    mode.json          the user's stored choice {"mode": "on"|"local"|"off", "at": ...}
    machine_key        the machine's secret key (JSON), made at the first send, deleted by off;
                       the machine id is its hash (_identity.py)
    machine_id         the random UUID4 of a version before the key (read once, then removed)
    notice             exists once the notice has been shown
    state.json         last send attempt, back-off, history, totals (the sender's, under sender.lock)
    schedule           "<next attempt at> <last automatic try at>": state.json's two times the exit
                       hook needs, as text (no JSON parser on a short CLI's path)
    autosend.<n>       one exiting process per send interval starts the detached sender
    buffer.jsonl       appended lines, capped at 256 KiB (lock: buffer.jsonl.lock)
    spill/*.jsonl      lines an exit hook could not append because the lock was held too long
    sender.lock        held by whoever rolls up or sends; liveness of a claim is judged by it
    outbox/CURRENT     names the committed generation
    outbox/gen-*/      inputs/ (claimed buffers and spills), carry.jsonl (not yet complete days),
                       reports/<id>.json (immutable reports waiting to be sent)
"""

from __future__ import annotations

import os
import sys

from . import _fs
from ._consent import parse_stored

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Callable

MAX_SMALL_FILE = 256 * 1024
#: a buffer file larger than this is hostile or damaged: only this much of it is read
MAX_BUFFER_READ = 4 * 256 * 1024


class LockTimeout(Exception):
    pass


def _loads(data: bytes | None) -> Any:
    if data is None:
        return None
    from . import _flat

    flat = _flat.loads(data)  # mode.json, config.json: no parser import on a short CLI's path
    if flat is not None:
        return flat
    if "orjson" not in sys.modules:
        import json

        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return None
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def _dumps(obj: Any) -> bytes:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


class AppStore:
    """Paths and file operations of one app's directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        d = os.fspath(directory)
        join = os.path.join
        self.dir = d
        self.buffer = join(d, "buffer.jsonl")
        self.buffer_lock = join(d, "buffer.jsonl.lock")
        self.sender_lock = join(d, "sender.lock")
        self.spill = join(d, "spill")
        self.outbox = join(d, "outbox")
        self.current = join(self.outbox, "CURRENT")
        self.mode_file = join(d, "mode.json")
        self.config_file = join(d, "config.json")
        self.state_file = join(d, "state.json")
        self.schedule_file = join(d, "schedule")
        self.machine_id_file = join(d, "machine_id")
        self.notice_file = join(d, "notice")
        self.forget_file = join(d, "forget.json")

    @property
    def app(self) -> str:
        return os.path.basename(self.dir)

    def exists(self) -> bool:
        return _fs.is_real_dir(self.dir)

    def ensure(self) -> None:
        _fs.ensure_dir(self.dir)

    def unsafe(self) -> str | None:
        """Why this app's data must not be used (a data root or app directory that is not this
        user's alone), or None."""
        return _fs.unsafe_reason(os.path.dirname(self.dir), follow=True) or _fs.unsafe_reason(self.dir, follow=False)

    # -- small files -------------------------------------------------------------------------
    def read_json(self, path: str) -> Any:
        return _loads(_fs.read_capped(path, MAX_SMALL_FILE))

    def write_json(self, path: str, obj: Any) -> None:
        self.ensure()
        _fs.atomic_write(path, _dumps(obj))

    def stored_mode(self) -> str | None:
        return parse_stored(self.read_json(self.mode_file))

    def config(self) -> dict[str, Any]:
        obj = self.read_json(self.config_file)
        return obj if isinstance(obj, dict) else {}

    def state(self) -> dict[str, Any]:
        obj = self.read_json(self.state_file)
        return obj if isinstance(obj, dict) else {}

    def write_state(self, state: dict[str, Any]) -> None:
        """state.json, and the two times of it the exit hook reads (``schedule``)."""
        self.write_json(self.state_file, state)
        times = (_number(state.get("next_attempt_at")), _number(state.get("last_auto_try_at")))
        _fs.atomic_write(self.schedule_file, b"%r %r\n" % times)

    def schedule(self) -> tuple[float, float]:
        """(next attempt at, last automatic try at), from ``schedule``; from state.json when only an
        older version wrote it."""
        data = _fs.read_capped(self.schedule_file, 128)
        if data is not None:
            try:
                a, b = data.split()
                return float(a), float(b)
            except ValueError:
                return 0.0, 0.0
        if not os.path.lexists(self.state_file):
            return 0.0, 0.0
        state = self.state()
        return _number(state.get("next_attempt_at")), _number(state.get("last_auto_try_at"))

    def machine_id(self, *, create: bool) -> str | None:
        data = _fs.read_capped(self.machine_id_file, 64)
        if data:
            text = data.decode("ascii", "replace").strip()
            if _is_uuid(text):
                return text
        if not create:
            return None
        import uuid

        mid = str(uuid.uuid4())
        self.ensure()
        _fs.atomic_write(self.machine_id_file, mid.encode() + b"\n")
        return mid

    # -- locks ---------------------------------------------------------------------------------
    def lock_buffer(self, timeout: float) -> _Held:
        """Hold the buffer lock: a raw flock where there is one (no filelock import, so a forked
        child's persist imports nothing a dead thread of the parent may have been importing);
        elsewhere (Windows) filelock.
        Raises LockTimeout, or OSError when the lock cannot be taken at all (ELOOP, ENOLCK, ENOSYS)."""
        self.ensure()
        return _lock(self.buffer_lock, timeout)

    def lock_sender(self, timeout: float) -> _Held:
        """Hold the sender lock (one pipeline run at a time), as the buffer lock is held: the raw
        flock where there is one. Not filelock there: its newer releases manage the lock file
        themselves (ownership records, exchanging files), a protocol this library's own flock
        users do not follow; one mechanism for both locks is one set of rules."""
        self.ensure()
        return _lock(self.sender_lock, timeout)

    # -- spill files ---------------------------------------------------------------------------
    def write_spill(self, data: bytes) -> str:
        """Lines that could not be appended in time: a uniquely named side file the next sender takes."""
        _fs.ensure_dir(self.spill, replace=True)
        path = os.path.join(self.spill, f"{_fs.random_name()}.jsonl")
        _fs.atomic_write(path, data)
        return path

    def spill_files(self) -> list[str]:
        return [os.path.join(self.spill, n) for n in _fs.listdir(self.spill) if n.endswith(".jsonl") and n[0] != "."]

    # -- removal -------------------------------------------------------------------------------
    def delete_data(self, *, keep: tuple[str, ...] = ()) -> list[str]:
        """Delete everything in the app directory except the names in ``keep``; returns what went.
        Links are unlinked, never followed; an app directory that is itself a link is unlinked."""
        if os.path.islink(self.dir):
            return ["(link)"] if _fs.remove(self.dir) else []
        gone = [n for n in _fs.listdir(self.dir) if n not in keep and _fs.remove(os.path.join(self.dir, n))]
        return sorted(gone)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class _Held:
    def __init__(self, release: Any) -> None:
        self._release = release

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()


def _import_filelock() -> Any:
    """``import filelock`` without printing into the host's stderr. Where ``fcntl`` is missing off
    Windows, filelock warns "only soft file lock is available" (a ``UserWarning``; an exception
    under ``-W error``) and falls back to ``SoftFileLock``, whose marker file a crash leaves
    behind. The warning is silenced for that one import (the host's filters are restored on
    exit); a marker left by a dead holder is handled by :func:`_filelock`."""
    mod = sys.modules.get("filelock")
    if mod is not None and hasattr(mod, "FileLock"):
        return mod
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="only soft file lock", category=UserWarning)
        import filelock
    return filelock


def _lock(path: str, timeout: float) -> _Held:
    if _fs.have_flock():
        fd = _fs.flock_with_timeout(path, timeout)
        if fd is None:
            raise LockTimeout(path)
        return _Held(lambda: _fs.unlock(fd))
    return _filelock(path, timeout)


def _filelock(path: str, timeout: float) -> _Held:
    filelock = _import_filelock()
    # A soft lock (no fcntl, off Windows) is a marker file: a crash leaves it behind. filelock
    # releases from 3.22 on record the holder's PID and reclaim a dead holder's marker themselves
    # (SoftFileLock.pid); with an older one the library records its PID and removes a dead one's.
    soft = (
        not getattr(filelock, "has_fcntl", True)
        and sys.platform != "win32"
        and not hasattr(filelock.SoftFileLock, "pid")
    )
    for attempt in (1, 2):
        # A planted symlink or hard link at a lock path would make every acquire fail (filelock
        # >= 3.20.1 refuses to follow it: CVE-2025-68146); it is removed, never followed.
        _fs.clear_planted(path)
        if soft:
            _fs.clear_dead_marker(path)
        lock = filelock.FileLock(path, timeout=max(timeout, 0.0), mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout as exc:
            raise LockTimeout(path) from exc
        except OSError:
            if attempt == 2:
                raise
            continue
        if soft:
            _fs.write_marker_owner(path)
        return _Held(lock.release)
    raise LockTimeout(path)  # pragma: no cover - the loop returns or raises


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def app_stores(root: str) -> Iterator[AppStore]:
    """Every app directory under the data root."""
    for name in _fs.listdir(root):
        if name[0] != "." and _fs.is_real_dir(os.path.join(root, name)):
            yield AppStore(os.path.join(root, name))


def append(
    store: AppStore,
    rollup: dict[Any, int],
    *,
    today: str,
    timeout: float,
    check: Callable[[bool], bool] | None = None,
    data: bytes | None = None,
    local: bool = False,
) -> str:
    """Append coalesced lines (one per day x name) to the buffer under its lock.

    Over the cap, the buffer is compacted first and only then are the oldest days dropped (under
    ``_dropped``). When the lock cannot be had within ``timeout``, the lines go to a spill file
    instead: nothing is lost and the caller never waits longer than ``timeout``. Returns
    "appended", "compacted" or "spilled".

    ``check(locked)`` runs under the buffer lock before anything is written (``off`` holds that
    lock while it deletes), or with ``locked`` False before a spill file is written: when it
    returns False nothing is written and "off" is returned. ``data``:
    the lines of ``rollup``, when the caller has them already. ``local``: they are local-only
    lines (never sent).
    """
    from . import _log
    from ._line import BUFFER_CAP, encode_line_fast, encode_local_line

    if data is None:
        enc = encode_local_line if local else encode_line_fast
        data = b"".join(enc(d, n, c) for (d, n), c in sorted(rollup.items()) if c > 0)
    if not data:
        return "appended"
    try:
        held = store.lock_buffer(timeout)
    except Exception as exc:
        # Not had within the timeout, or not at all: a planted link the open refused (ELOOP), a
        # file system without locks (ENOLCK, ENOSYS on NFS or FUSE), or, where there is no fcntl,
        # filelock failing to import in an exit hook (filelock 4.1.0 on Python 3.10 raised
        # RuntimeError there once threading had shut down). The lines go to a spill file, which
        # needs no lock: a lock that cannot be taken never loses a count.
        if not isinstance(exc, LockTimeout):
            _log.log.debug("buffer lock failed, spilling: %r", exc)
        if check is not None and not check(False):
            return "off"
        store.write_spill(data)
        return "spilled"
    with held:
        _log.step("persist:locked")
        if check is not None and not check(True):
            return "off"
        _fs.clear_planted(store.buffer)  # a link, FIFO or directory is removed, never followed
        size = _fs.file_size(store.buffer)
        if size + len(data) <= BUFFER_CAP:
            _fs.append_bytes(store.buffer, data)
            _log.step("persist:appended")
            return "appended"
        _compact(store, rollup, today, local=local)
        _log.step("persist:appended")
        return "compacted"


def _compact(store: AppStore, rollup: dict[Any, int], today: str, *, local: bool = False) -> None:
    from ._codec import decode_lines
    from ._line import split_own
    from ._names import CORRUPT
    from ._rollup import drop_expired, fit_to_cap, merge

    old = _fs.read_capped(store.buffer, MAX_BUFFER_READ) or b""
    own, rest = split_own(old)  # our own lines without a JSON parser: the codec reads the rest
    foreign: list[bytes] = []
    merged = own if local else merge(own, rollup)
    local_only = rollup if local else {}
    if rest.strip():
        dec = decode_lines(rest)
        merged = merge(merged, dec.rollup)
        local_only = merge(local_only, dec.local)
        foreign = dec.foreign
        if dec.corrupt:
            merged[(today, CORRUPT)] = merged.get((today, CORRUPT), 0) + dec.corrupt
    out, _ = fit_to_cap(merged, foreign, today=today, local=drop_expired(local_only, today=today))
    _fs.atomic_write(store.buffer, out)
