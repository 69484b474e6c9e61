"""The exporter's scratch directories, and removing those a killed process left.

An export spools its new layers under WORK/tmp-<pid>-<random>/ and removes that
directory when it ends. A process killed mid-export (kill -9, OOM, power off)
cannot, so without this every crashed export would leave its layers on disk for
good. `remove_stale_work_dirs(WORK)` deletes every such directory whose process is
gone (and ones named before the pid was part of the name); directories of live
processes, such as other exporters sharing WORK, are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import List

logger = logging.getLogger(__name__)

_PREFIX = "tmp-"
_WITH_PID = re.compile(r"tmp-(\d+)-[0-9a-f]+")


def work_dir_name() -> str:
    """A new scratch directory name for this process: tmp-<pid>-<random>."""
    return f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_stale_work_dirs(directory: Path) -> List[str]:
    """Removes scratch directories of processes that are gone; their names."""
    removed: List[str] = []
    try:
        candidates = [path for path in Path(directory).iterdir() if path.name.startswith(_PREFIX) and path.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        match = _WITH_PID.fullmatch(path.name)
        if match is not None and _process_alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        logger.info("removed %d scratch directories of interrupted exports in %s", len(removed), directory)
    return removed


__all__ = ["remove_stale_work_dirs", "work_dir_name"]
