"""What servers that stopped without cleaning up left of the shared-memory plane: found and removed.

A server names its segments /dev/shm/tfa_pg_<pid>_<hex> and its socket
directories <tmp>/tfa-pg-<pid>-*; those of a pid that no longer runs are
removed when the next server starts (see policy_server.shm.plane).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import secrets
import shutil
import tempfile

logger = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
PREFIX = "tfa_pg_"
DIR_PREFIX = "tfa-pg-"
_NAME = re.compile(rf"^{PREFIX}(\d+)_[0-9a-f]+$")
_DIR = re.compile(rf"^{DIR_PREFIX}(\d+)-")


def available() -> bool:
    """Whether this host has a writable POSIX shared-memory directory."""
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def create(size: int) -> tuple[str, mmap.mmap]:
    """A new owner-only segment of `size` bytes, mapped: (its name, the mapping).

    The space is reserved at once (posix_fallocate), so a full /dev/shm fails
    here rather than with SIGBUS on a later write.

    Raises:
      OSError: the segment cannot be created or reserved.
    """
    name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        return name, mmap.mmap(fd, size)
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


def unlink(name: str) -> None:
    """Removes a segment's name (mappings keep its memory until they go); a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(SHM_DIR, name))


def remove_leftovers() -> int:
    """Unlinks the segments and socket directories of servers that no longer run; returns how many."""
    removed = 0
    with contextlib.suppress(OSError):
        for name in os.listdir(SHM_DIR):
            match = _NAME.match(name)
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(SHM_DIR, name))
                    removed += 1
    top = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(top):
            match = _DIR.match(name)
            if match and not _alive(int(match.group(1))):
                shutil.rmtree(os.path.join(top, name), ignore_errors=True)
                removed += 1
    if removed:
        logger.debug("removed %d shared-memory segments or sockets left by servers that stopped", removed)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
