"""The buffer: locked coalesced appends, the byte cap with _dropped, spill files, hostile files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers import lock_held_elsewhere

from telemetry_rollup import _codec, _fs, _store
from telemetry_rollup._rollup import BUFFER_CAP


def read(store: _store.AppStore) -> _codec.Decoded:
    return _codec.decode_lines(Path(store.buffer).read_bytes())


def test_append_coalesces_and_sets_modes(tmp_path: Path) -> None:
    store = _store.AppStore(tmp_path / "root" / "acme")
    assert (
        _store.append(store, {("2026-11-21", "a"): 2, ("2026-11-21", "b"): 1}, today="2026-11-22", timeout=1)
        == "appended"
    )
    assert _store.append(store, {("2026-11-21", "a"): 3}, today="2026-11-22", timeout=1) == "appended"
    assert read(store).rollup == {("2026-11-21", "a"): 5, ("2026-11-21", "b"): 1}
    assert len(Path(store.buffer).read_bytes().splitlines()) == 3
    assert oct(os.stat(store.dir).st_mode & 0o777) == "0o700"
    assert oct(os.stat(store.buffer).st_mode & 0o777) == "0o600"


def test_cap_compacts_first_then_drops_oldest_days_under_dropped(tmp_path: Path) -> None:
    store = _store.AppStore(tmp_path / "acme")
    # many appends of the same few counters: compaction alone brings it back under the cap
    for _ in range(7000):
        _store.append(store, {("2026-11-21", "a"): 1}, today="2026-11-22", timeout=1)
    assert Path(store.buffer).stat().st_size <= BUFFER_CAP
    assert read(store).rollup == {("2026-11-21", "a"): 7000}
    # now distinct names over many days: the oldest days go, and _dropped says how much
    total = 0
    for d in range(40):
        day = f"2026-10-{d % 30 + 1:02d}" if d < 30 else f"2026-11-{d - 29:02d}"
        batch = {(day, f"name{i}"): 1 for i in range(200)}
        total += 200
        _store.append(store, batch, today="2026-11-22", timeout=1)
        assert Path(store.buffer).stat().st_size <= BUFFER_CAP
    dec = read(store)
    kept = sum(c for (_, n), c in dec.rollup.items() if n not in ("_dropped", "a"))
    dropped = sum(c for (_, n), c in dec.rollup.items() if n == "_dropped")
    assert dropped > 0 and kept + dropped == total
    assert min(d for d, n in dec.rollup if n != "a") > "2026-10-01"


def test_corrupt_lines_are_counted_and_newer_versions_kept_through_compaction(tmp_path: Path) -> None:
    store = _store.AppStore(tmp_path / "acme")
    store.ensure()
    Path(store.buffer).write_bytes(
        b'garbage\n{"v":9,"future":1}\n' + b'{"v":1,"d":"2026-11-21","n":"x","c":1}\n' * 7000
    )
    _store.append(store, {("2026-11-22", "y"): 1}, today="2026-11-22", timeout=1)
    dec = read(store)
    assert dec.rollup[("2026-11-21", "x")] == 7000
    assert dec.rollup[("2026-11-22", "_corrupt")] == 1
    assert dec.foreign == [b'{"v":9,"future":1}']


def test_lock_held_forever_spills_within_the_timeout(tmp_path: Path) -> None:
    store = _store.AppStore(tmp_path / "acme")
    store.ensure()
    with lock_held_elsewhere(store.buffer_lock):
        t0 = time.monotonic()
        assert _store.append(store, {("2026-11-21", "a"): 4}, today="2026-11-22", timeout=0.3) == "spilled"
        assert time.monotonic() - t0 < 1.0
        (spill,) = store.spill_files()
        assert _codec.decode_lines(Path(spill).read_bytes()).rollup == {("2026-11-21", "a"): 4}


def test_raw_flock_and_filelock_exclude_each_other(tmp_path: Path) -> None:
    import filelock

    path = tmp_path / "x.lock"
    fd = _fs.flock_with_timeout(path, 1)
    assert fd is not None
    lock = filelock.FileLock(str(path), timeout=0.1)
    try:
        lock.acquire()
        raise AssertionError("filelock acquired a lock held by flock")
    except filelock.Timeout:
        pass
    _fs.unlock(fd)
    with filelock.FileLock(str(path), timeout=1):
        assert _fs.flock_with_timeout(path, 0.1) is None


def test_symlink_and_fifo_in_place_of_the_buffer_are_never_followed(tmp_path: Path) -> None:
    store = _store.AppStore(tmp_path / "acme")
    store.ensure()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    Path(store.buffer).symlink_to(victim)
    _store.append(store, {("2026-11-21", "a"): 1}, today="2026-11-22", timeout=1)
    assert victim.read_bytes() == b"precious"
    assert not Path(store.buffer).is_symlink()
    Path(store.buffer).unlink()
    os.mkfifo(store.buffer)
    _store.append(store, {("2026-11-21", "a"): 1}, today="2026-11-22", timeout=1)  # must not block
    assert read(store).rollup == {("2026-11-21", "a"): 1}
