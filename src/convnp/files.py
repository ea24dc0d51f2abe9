"""Reading and writing files safely: only regular files are read, every write is atomic, a run folder is locked.

    with open_regular(path, "checkpoint", CheckpointError) as file: ...   # a FIFO or device: error, never opened
    atomic_write_text(path, text)                                         # temp file + fsync + rename
    with RunLock(folder): ...                                             # one training per folder at a time
    remove_stale_temporaries(folder)                                      # what a killed write left behind

Depends on the standard library only, so every layer may use it.
"""
import contextlib
import os
import stat
import tempfile
from pathlib import Path

LOCK_NAME = ".convnp.lock"
TEMP_SUFFIXES = (".tmp",)


# --- reading ----------------------------------------------------------------------------------------------
def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def require_regular_file(path, what="file", error=ValueError):
    """``os.stat(path)`` after checking that ``path`` is a regular file, without opening it.

    A missing path raises FileNotFoundError; a folder, FIFO, device or socket raises ``error`` naming the
    path (a FIFO is never opened: opening one blocks until someone writes to it)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} file") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path} is {_kind(info.st_mode)}, not a regular {what} file")
    return info


def open_regular(path, what="file", error=ValueError):
    """Open a regular file for reading in binary mode; anything else raises ``error`` naming ``path``.

    Checked with stat first, opened non-blocking, and checked again on the open descriptor, so a path
    swapped for a FIFO in between cannot make the caller hang."""
    require_regular_file(path, what, error)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path} is {_kind(mode)}, not a regular {what} file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


# --- writing ----------------------------------------------------------------------------------------------
def atomic_write(path, write):
    """Write ``path`` atomically: ``write(file)`` fills a temporary file in the same folder, which is flushed,
    fsynced and renamed over ``path``; the folder is then fsynced.  A crash leaves the old file or the new
    one, never a mixture; an exception removes the temporary file.  OSError messages name ``path``."""
    path = Path(path)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno is not None and str(path) not in str(error):
            raise type(error)(error.errno, f"cannot write {path}: {error.strerror}") from None
        raise
    fsync_folder(folder)
    return path


def atomic_write_text(path, text):
    """``atomic_write`` of UTF-8 text -> path."""
    return atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder):
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder):
    """Delete the ``.<name>.*.tmp`` files an atomic write killed half-way left in ``folder`` -> their names.

    Call it only while holding the folder's RunLock: a live writer's temporary file looks the same."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIXES) and entry.name != LOCK_NAME:
            with contextlib.suppress(OSError):
                if stat.S_ISREG(entry.lstat().st_mode):
                    entry.unlink()
                    removed.append(entry.name)
    return sorted(removed)


# --- the run lock -----------------------------------------------------------------------------------------
class RunLockedError(OSError):
    """Another live process holds a run folder's lock."""


def _pid_alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunLock:
    """A lock file ``folder/.convnp.lock`` holding the owner's pid, created with O_EXCL.

    ``acquire`` refuses (RunLockedError naming the pid) while the owner lives; a lock whose pid is dead
    (a killed run) is taken over.  ``release`` removes the file if it is still ours.  A context manager."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def holder(self):
        """The pid written in the lock file, or None (no file, or unreadable)."""
        try:
            text = self.path.read_text().strip()
            return int(text.split()[0]) if text else None
        except (OSError, ValueError, IndexError):
            return None

    def acquire(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self.holder()
                if pid is not None and pid != os.getpid() and _pid_alive(pid):
                    raise RunLockedError(f"{self.folder} is in use by another convnp run (pid {pid}, lock file "
                                         f"{self.path}); wait for it to finish or choose another --out") from None
                if pid is None:
                    # Being written by its creator this very moment, or left empty by a crash: look again.
                    import time

                    time.sleep(0.05)
                    if self.holder() is None:
                        with contextlib.suppress(OSError):
                            self.path.unlink()
                    continue
                with contextlib.suppress(OSError):  # a dead owner's stale lock: take it over
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(f"{os.getpid()}\n")
                file.flush()
                os.fsync(file.fileno())
            self.held = True
            return self
        raise RunLockedError(f"{self.folder}: could not take the lock file {self.path}")

    def release(self):
        if self.held and self.holder() == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
