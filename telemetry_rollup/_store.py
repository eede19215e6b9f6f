"""The app directory: locked appends, spill files, the outbox generations, and small state files.

Layout (all below ``<root>/<app>/``)::

    config.json        endpoint, app version, allowlist, env prefix, default (written by configure)
    mode.json          the user's stored choice {"mode": "on"|"local"|"off", "at": ...}
    machine_key        the machine's secret key (JSON), made at the first send, deleted by off;
                       the machine id is its hash (_identity.py)
    machine_id         the random UUID4 of a version before the key (read once, then removed)
    notice             exists once the notice has been shown
    state.json         last send attempt, back-off, history, totals (the sender's, under sender.lock)
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from . import _fs
from ._consent import parse_stored
from ._rollup import BUFFER_CAP

MAX_SMALL_FILE = 256 * 1024
#: a buffer file larger than this is hostile or damaged: only this much of it is read
MAX_BUFFER_READ = 4 * 256 * 1024


class LockTimeout(Exception):
    pass


def _loads(data: bytes | None) -> Any:
    if data is None:
        return None
    if "orjson" not in sys.modules:
        # A CLI's exit hook reads config.json and state.json; importing orjson there costs ~8 ms
        # (it loads dataclasses, inspect, uuid), the stdlib parser ~1 ms and reads what orjson wrote.
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

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.buffer = directory / "buffer.jsonl"
        self.buffer_lock = directory / "buffer.jsonl.lock"
        self.sender_lock = directory / "sender.lock"
        self.spill = directory / "spill"
        self.outbox = directory / "outbox"
        self.current = self.outbox / "CURRENT"
        self.mode_file = directory / "mode.json"
        self.config_file = directory / "config.json"
        self.state_file = directory / "state.json"
        self.machine_id_file = directory / "machine_id"
        self.notice_file = directory / "notice"
        self.forget_file = directory / "forget.json"

    @property
    def app(self) -> str:
        return self.dir.name

    def exists(self) -> bool:
        return self.dir.is_dir()

    def ensure(self) -> None:
        _fs.ensure_dir(self.dir)

    # -- small files -------------------------------------------------------------------------
    def read_json(self, path: Path) -> Any:
        return _loads(_fs.read_capped(path, MAX_SMALL_FILE))

    def write_json(self, path: Path, obj: Any) -> None:
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

    # -- the buffer ----------------------------------------------------------------------------
    def lock_buffer(self, timeout: float, *, fast: bool) -> _Held:
        """Hold the buffer lock. ``fast`` uses a raw flock (the exit hook: no filelock import)."""
        self.ensure()
        if fast and os.name == "posix":
            fd = _fs.flock_with_timeout(self.buffer_lock, timeout)
            if fd is None:
                raise LockTimeout(str(self.buffer_lock))
            return _Held(lambda: _fs.unlock(fd))
        return _filelock(self.buffer_lock, timeout)

    def lock_sender(self, timeout: float) -> _Held:
        self.ensure()
        return _filelock(self.sender_lock, timeout)

    def write_spill(self, data: bytes) -> Path:
        """Lines that could not be appended in time: a uniquely named side file the next sender takes."""
        _fs.ensure_dir(self.spill)
        path = self.spill / f"{_fs.random_name()}.jsonl"
        _fs.atomic_write(path, data)
        return path

    def spill_files(self) -> list[Path]:
        try:
            return sorted(p for p in self.spill.iterdir() if p.suffix == ".jsonl" and not p.name.startswith("."))
        except OSError:
            return []

    # -- removal -------------------------------------------------------------------------------
    def delete_data(self, *, keep: tuple[str, ...] = ()) -> list[str]:
        """Delete everything in the app directory except the names in ``keep``; returns what went."""
        gone: list[str] = []
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return gone
        for p in entries:
            if p.name in keep:
                continue
            try:
                if p.is_dir() and not p.is_symlink():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()
                gone.append(p.name)
            except OSError:
                pass
        return sorted(gone)


class _Held:
    def __init__(self, release: Any) -> None:
        self._release = release

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()


def _filelock(path: Path, timeout: float) -> _Held:
    import filelock

    lock = filelock.FileLock(str(path), timeout=max(timeout, 0.0), mode=0o600)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        raise LockTimeout(str(path)) from exc
    return _Held(lock.release)


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def app_stores(root: Path) -> Iterator[AppStore]:
    """Every app directory under the data root."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for p in entries:
        if p.is_dir() and not p.is_symlink() and not p.name.startswith("."):
            yield AppStore(p)


def append(
    store: AppStore,
    rollup: dict[Any, int],
    *,
    today: str,
    timeout: float,
    fast: bool,
    check: Callable[[], bool] | None = None,
) -> str:
    """Append coalesced lines (one per day x name) to the buffer under its lock.

    Over the cap, the buffer is compacted first and only then are the oldest days dropped (under
    ``_dropped``). When the lock cannot be had within ``timeout``, the lines go to a spill file
    instead: nothing is lost and the caller never waits longer than ``timeout``. Returns
    "appended", "compacted" or "spilled".

    ``check`` runs under the buffer lock before anything is written (``off`` holds that lock
    while it deletes): when it returns False nothing is written and "off" is returned.
    """
    from ._codec import encode_line_fast

    data = b"".join(encode_line_fast(d, n, c) for (d, n), c in sorted(rollup.items()) if c > 0)
    if not data:
        return "appended"
    try:
        with store.lock_buffer(timeout, fast=fast):
            if check is not None and not check():
                return "off"
            _replace_hostile(store.buffer)
            size = _fs.file_size(store.buffer)
            if size + len(data) <= BUFFER_CAP:
                _fs.append_bytes(store.buffer, data)
                return "appended"
            from ._codec import decode_lines
            from ._names import CORRUPT
            from ._rollup import fit_to_cap, merge

            old = _fs.read_capped(store.buffer, MAX_BUFFER_READ) or b""
            dec = decode_lines(old)
            merged = merge(dec.rollup, rollup)
            if dec.corrupt:
                merged[(today, CORRUPT)] = merged.get((today, CORRUPT), 0) + dec.corrupt
            out, _ = fit_to_cap(merged, dec.foreign, today=today)
            _fs.atomic_write(store.buffer, out)
            return "compacted"
    except LockTimeout:
        if check is not None and not check():
            return "off"
        store.write_spill(data)
        return "spilled"


def _replace_hostile(path: Path) -> None:
    """A symlink, FIFO or directory where the buffer should be is removed, never followed."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    import stat

    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
