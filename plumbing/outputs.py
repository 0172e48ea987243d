"""Outputs written whole, by one writer at a time: locks, staged folders, and clear disk-full
errors.

Every command that writes files goes through here (``steering``, ``audits`` and ``fairgen`` all
import it; it imports none of them):

* ``output_lock(target)``: ``.<name>.lock`` beside the target holds the writer's pid, host and
  command; a second writer gets a ValueError naming them. A lock whose pid is dead on this host is
  stale and is taken over.
* ``staged_folder(target)`` / ``staged_files(paths)``: the caller writes a complete new output in a
  fresh temporary folder beside the target; one ``rename`` of that folder to ``.<name>.commit`` is
  the
  commit point, after which the files (or the whole folder) are moved into place. A process killed
  before the commit leaves the old output untouched; one killed after it leaves a commit that the
  next reader or writer finishes (``finish_pending``), so a reader sees the old or the new output.
* ``write_new`` / ``replace_file``: files are always created new (never opened by an existing name,
  so a hard link elsewhere is never written through) with the usual mode (0666 less the umask).
* A full disk (ENOSPC, EDQUOT) becomes one ``DiskFullError`` (a ValueError) naming the file; the
  temporary files are removed and the previous output stays as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)
_CHUNK = 1 << 20
STALE_UNREADABLE_S = 30  # a lock file with no readable holder older than this is a crashed writer's


class DiskFullError(ValueError):
    """The disk (or quota) filled up while writing an output; nothing of the new output was kept."""


class OutputLockedError(ValueError):
    """Another process is writing the same output."""


# ---------------------------------------------------------------- low-level writes (one place to
# inject failures)


def _write_chunk(fd: int, data: memoryview) -> int:
    return os.write(fd, data)


def _rename(src, dst) -> None:
    os.replace(src, dst)


def _remove_tree(path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file here (0666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _full(error: OSError, path) -> DiskFullError:
    return DiskFullError(
        f"disk full while writing {path} ({os.strerror(error.errno)}); "
        "the previous output, if any, was left as it was"
    )


def write_new(path: str | os.PathLike, data: bytes, sync: bool = False) -> Path:
    """Create ``path`` (it must not exist) holding ``data``, with the usual file mode; ``sync``
    flushes
    it to the disk (single-file replacements do; the many files of a staged folder do not, for
    speed:
    a killed process cannot mix outputs either way, only a power cut between write and flush
    could)."""
    path = Path(path)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666
        )
    except OSError as error:
        if error.errno in _FULL:
            raise _full(error, path) from None
        raise
    try:
        view = memoryview(data)
        while view:
            view = view[_write_chunk(fd, view[:_CHUNK]) :]
        if sync:
            os.fsync(fd)
    except OSError as error:
        os.close(fd)
        path.unlink(missing_ok=True)
        if error.errno in _FULL:
            raise _full(error, path) from None
        raise
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def replace_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a new file beside ``path`` and rename it over ``path`` (atomic, never
    through a link)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    try:
        write_new(tmp, data, sync=True)
        _rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ---------------------------------------------------------------- the lock


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _holder(lock: Path) -> dict | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):
        return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _stale(lock: Path, holder: dict | None) -> bool:
    if holder is None:  # a writer killed while writing its lock file, or garbage
        try:
            return time.time() - lock.stat().st_mtime > STALE_UNREADABLE_S
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))


_HELD: dict[Path, tuple[int, int]] = {}  # lock -> (pid holding it, nesting depth) in this process


@contextmanager
def output_lock(target: str | os.PathLike, command: str | None = None):
    """Hold ``.<name>.lock`` beside ``target`` while writing it; a second writer is refused by name.

    Re-entrant within one process (a command locks its output at the start, the writer again at
    the end)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(target)
    if (
        _HELD.get(lock, (None, 0))[0] == os.getpid()
    ):  # this process holds it already (not a forked parent)
        pid, depth = _HELD[lock]
        _HELD[lock] = (pid, depth + 1)
        try:
            yield lock
        finally:
            _HELD[lock] = (pid, depth)
        return
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _holder(lock)
            if _stale(lock, holder):
                lock.unlink(
                    missing_ok=True
                )  # its writer is gone; whatever it staged is finished or dropped below
                continue
            who = (
                (
                    f"pid {holder.get('pid')} on {holder.get('host')} "
                    f"({holder.get('command')!s:.200}, "
                    f"since {holder.get('started')})"
                )
                if holder
                else "a process that is still starting"
            )
            raise OutputLockedError(
                f"{target} is being written by {who}; wait for it to finish, or, if that "
                f"process is gone, remove {lock}"
            ) from None
        except OSError as error:
            if error.errno in _FULL:
                raise _full(error, lock) from None
            raise
        try:
            os.write(fd, json.dumps(me).encode())
        finally:
            os.close(fd)
        break
    else:
        raise OutputLockedError(
            f"{target}: could not take the lock {lock}; remove it if no fairgen writes there"
        )
    _HELD[lock] = (os.getpid(), 1)
    try:
        finish_pending(target, cleanup=True)
        yield lock
    finally:
        _HELD.pop(lock, None)
        if _holder(lock) == me:
            lock.unlink(missing_ok=True)


# ---------------------------------------------------------------- staged outputs


def _commit_path(target: Path) -> Path:
    return target.parent / f".{target.name}.commit"


def _old_path(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def finish_pending(target: str | os.PathLike, cleanup: bool = False) -> None:
    """Finish (roll forward) a commit a killed writer left for ``target``. With ``cleanup`` (only
    under the lock), also drop the temporary folders of writers that died before their commit."""
    target = Path(target).absolute()
    commit, old = _commit_path(target), _old_path(target)
    try:
        if commit.is_dir():
            moves = commit / ".moves.json"
            if moves.is_file():  # staged_files: move each file to its place (same folder)
                for name in json.loads(moves.read_text()):
                    if (commit / name).exists():
                        _rename(commit / name, target.parent / name)
                _remove_tree(commit)
            else:  # staged_folder: swap the whole folder
                if target.exists() and not old.exists():
                    _rename(target, old)
                _rename(commit, target)
    except FileNotFoundError:  # another process finished the same commit first
        pass
    except OSError:
        if (
            cleanup
        ):  # a writer must finish it; a reader (a read-only folder, say) reads what is there
            raise
    if old.exists() and not commit.exists():
        _remove_tree(old)
    if cleanup:
        for leftover in target.parent.glob(f".{target.name}.staging-*"):
            _remove_tree(leftover)
        for leftover in target.parent.glob(f".{target.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def check_replaceable(target: str | os.PathLike, replaceable) -> None:
    """Refuse to swap away a folder that holds files fairgen did not write there (callers check
    early,
    before any long computation; ``staged_folder`` checks again)."""
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise ValueError(f"--out must be a folder, but {target} is a file")
    foreign = [
        p.name for p in target.iterdir() if not any(p.match(pattern) for pattern in replaceable)
    ]
    if foreign:
        raise ValueError(
            f"--out {target} already holds files this command did not write "
            f"({', '.join(sorted(foreign)[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder"
        )


def _folder_mode(path: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)  # mkdtemp makes 0700 folders


@contextmanager
def staged_folder(target: str | os.PathLike, replaceable=(), command: str | None = None):
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target`` whole.

    ``replaceable``: glob patterns of the names a previous output of this command holds; any other
    entry in an existing ``target`` is a ValueError (the folder is not ours to swap away).
    """
    target = Path(target).absolute()
    with output_lock(target, command):
        check_replaceable(target, replaceable)
        stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
        try:
            yield stage
            _folder_mode(stage)
            _rename(stage, _commit_path(target))
        except BaseException:
            _remove_tree(stage)
            raise
        finish_pending(target)


@contextmanager
def staged_files(paths, command: str | None = None):
    """Yield a temporary folder; write each of ``paths`` there by its base name; on success all of
    them replace their targets together (a card's JSON and tensors). The first path names the
    lock."""
    paths = [Path(p).absolute() for p in paths]
    key = paths[0]
    if any(p.parent != key.parent for p in paths):
        raise ValueError(f"staged_files: {[str(p) for p in paths]} must share one folder")
    with output_lock(key, command):
        stage = Path(tempfile.mkdtemp(dir=key.parent, prefix=f".{key.name}.staging-"))
        try:
            yield stage
            write_new(stage / ".moves.json", json.dumps([p.name for p in paths]).encode())
            missing = [p.name for p in paths if not (stage / p.name).is_file()]
            if missing:
                raise RuntimeError(f"staged_files: {missing} were not written")
            _rename(stage, _commit_path(key))
        except BaseException:
            _remove_tree(stage)
            raise
        finish_pending(key)
