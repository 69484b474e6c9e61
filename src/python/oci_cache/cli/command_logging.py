"""Logging for the one-shot commands (export, inspect, prune).

Their output is the result; the OCI tier's INFO log lines ("exported to …") would
repeat it on stderr. At the default `--log-level info` these commands therefore
show the library's warnings and errors only; `--log-level debug` shows everything.
"""

from __future__ import annotations

import argparse
import logging
from typing import List

_LIBRARY_LOGGERS = ("oci_cache.cache_image", "oci_cache.oci")


def quiet_library_info(args: argparse.Namespace) -> None:
    if getattr(args, "log_level", "info") == "info":
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


__all__: List[str] = ["quiet_library_info"]
