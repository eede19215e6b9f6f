"""Small file primitives: atomic writes, capped safe reads, and the exit hook's flock.

Every writer here creates files 0600 and directories 0700, never follows a symlink it did not
create, and never blocks on a FIFO planted where a file should be.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 for the levels it creates."""
    if path.is_dir() and not path.is_symlink():
        return
    parent = path.parent
    if parent != path and not parent.exists():
        ensure_dir(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    if path.is_symlink() or not path.is_dir():
        raise NotADirectoryError(str(path))


def random_name() -> str:
    # Not a PID: PIDs repeat across containers sharing a home directory.
    return os.urandom(12).hex()


def atomic_write(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` all-or-nothing: temp file beside it, then rename over it."""
    tmp = path.parent / f".{path.name}.{random_name()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _unlink_quiet(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def read_capped(path: Path, cap: int) -> bytes | None:
    """At most ``cap`` bytes of a regular file; None when it is missing, a link, a FIFO or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        left = cap
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def flock_with_timeout(lock_path: Path, timeout: float) -> int | None:
    """Take filelock's lock on ``lock_path`` with a raw ``fcntl.flock`` (the same mechanism, so the
    two interoperate) within ``timeout`` seconds. Returns the fd to pass to :func:`unlock`, or None."""
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
        else:
            # Like filelock: a lock on an inode that was unlinked meanwhile is no lock.
            try:
                if os.fstat(fd).st_ino == os.stat(lock_path).st_ino:
                    return fd
            except OSError:
                pass
            os.close(fd)
        now = time.monotonic()
        if now >= deadline:
            return None
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 0.05)


def unlock(fd: int) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def append_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
