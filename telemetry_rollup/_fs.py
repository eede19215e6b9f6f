"""Small file primitives on plain ``str`` paths: atomic writes, capped safe reads, the raw flock.

Every writer here creates files 0600 and directories 0700, never follows a symlink it did not
create, never writes through a hard link, and never blocks on a FIFO planted where a file should
be. Paths are strings and ``os.path``: ``pathlib`` costs a short CLI ~7 ms (it loads
``urllib.parse``, ``ipaddress``, ``fnmatch`` and ``re``), and this module is on the exit path.
"""

from __future__ import annotations

import errno
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    #: the store's paths are ``str``; the sender's generation paths may still be ``pathlib`` paths
    StrPath = Union[str, "os.PathLike[str]"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_join = os.path.join


def ensure_dir(path: StrPath, *, replace: bool = False) -> None:
    """Create ``path`` (and missing parents) with mode 0700. A symlink or non-directory at
    ``path`` raises NotADirectoryError, or with ``replace`` (a subdirectory that is ours, such as
    ``outbox``) is removed without being followed and the directory made anew."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            return
        if not replace:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        remove(path)
    parent = os.path.dirname(path)
    if parent and parent != path and not os.path.exists(parent):  # a symlinked data root is allowed
        ensure_dir(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)


def remove(path: StrPath) -> bool:
    """Delete ``path`` without following it: a link (symbolic or hard) or a file is unlinked, a real
    directory removed with its contents. True when something was removed."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    try:
        if stat.S_ISDIR(st.st_mode):
            import shutil  # rmtree never follows a symlink inside the tree

            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        return False
    return True


def planted(st: os.stat_result) -> bool:
    """Not a plain file of ours: a symlink, FIFO, device or directory, or a file with a second
    hard link (writing to it would write to another file too)."""
    return not stat.S_ISREG(st.st_mode) or st.st_nlink > 1


def clear_planted(path: StrPath) -> None:
    """Remove whatever stands at ``path`` unless it is a plain single-link file (lock files and
    the buffer, before they are opened for writing)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if planted(st):
        remove(path)


def unsafe_reason(path: StrPath, *, follow: bool) -> str | None:
    """Why a data directory must not be used: not owned by this user, or writable by group or
    others (anyone else could plant files or forge counts in it). None when it is fine or absent.
    ``follow``: the data root may be a symlink to a directory; an app directory may not."""
    if not hasattr(os, "getuid") or os.name == "nt":
        return None  # Windows: no POSIX owner or mode bits to judge by
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # not there (yet): what is made is made 0700
    except OSError as exc:
        return f"{path} cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return None  # not a directory: every write fails anyway, and the host is undisturbed
    if st.st_uid != os.getuid():
        return f"{path} is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def random_name() -> str:
    # Not a PID: PIDs repeat across containers sharing a home directory.
    return os.urandom(12).hex()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def atomic_write(path: StrPath, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` all-or-nothing: temp file beside it, then rename over it (a link
    at ``path`` is replaced, never written through)."""
    directory, name = os.path.split(path)
    tmp = _join(directory, f".{name}.{random_name()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        write_all(fd, data)
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


def _unlink_quiet(path: StrPath) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_capped(path: StrPath, cap: int, *, links_ok: bool = False) -> bytes | None:
    """At most ``cap`` bytes of a regular file; None when it is missing, a symlink, a FIFO,
    unreadable, or (unless ``links_ok``: the outbox hard-links its reports between generations)
    a file with a second hard link."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_nlink > 1 and not links_ok):
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


def listdir(path: StrPath) -> list[str]:
    """Names in a real directory (never through a symlink), sorted; [] when there is none."""
    try:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return []
        return sorted(os.listdir(path))
    except OSError:
        return []


def is_real_dir(path: StrPath) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def have_flock() -> bool:
    """Whether ``fcntl.flock`` exists here (not on Windows): else locks go through filelock."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def flock_with_timeout(lock_path: StrPath, timeout: float) -> int | None:
    """Take filelock's lock on ``lock_path`` with a raw ``fcntl.flock`` (the same mechanism, so the
    two interoperate) within ``timeout`` seconds. Returns the fd to pass to :func:`unlock`, or None."""
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        clear_planted(lock_path)
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


def append_bytes(path: StrPath, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            raise OSError(errno.EINVAL, "not a plain file", path)
        write_all(fd, data)
    finally:
        os.close(fd)


def file_size(path: StrPath) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
