"""File writes that a crash leaves whole or absent, for the local store and its journal.

A file is written under a temporary name, fsync'd, renamed into place, and its directory
fsync'd; only then is the write acknowledged. A full disk (ENOSPC, EDQUOT) is raised as
ResourceExhaustedError, so a client sees why a write was refused.
"""

from __future__ import annotations

import errno
import os

from oci_cache.errors import ResourceExhaustedError


def fsync_directory(path: str) -> None:
    """Makes renames and unlinks in the directory `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Writes every byte of `data` to `fd`; a full disk is a ResourceExhaustedError."""
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as e:
        raise disk_full_or(e) from None


def fsync(fd: int) -> None:
    """os.fsync, with a full disk raised as ResourceExhaustedError."""
    try:
        os.fsync(fd)
    except OSError as e:
        raise disk_full_or(e) from None


def disk_full_or(error: OSError) -> Exception:
    """The error to raise for `error`: ResourceExhaustedError when the disk is full."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhaustedError(f"the local store's disk is full ({error.strerror})")
    return error


def unlink_quietly(path: str) -> None:
    """Removes `path` if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def replace_file_durably(path: str, data: bytes) -> None:
    """Replaces the file at `path` with `data` so that a crash leaves the old file or the new one."""
    temp = path + ".new"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    fsync_directory(os.path.dirname(path))
