"""Entry point Pants loads for `backend_packages = ["pants_oci_cache"]`.

- `rules()`: the `[oci-cache]` options and the end-of-run export callback;
- `remote_auth(...)`: starts or reuses the daemon and points Pants' remote cache at it
  (Pants keeps one `remote_auth` across all backends).
"""

from __future__ import annotations

from typing import Iterable

from pants_oci_cache import end_of_run
from pants_oci_cache.auth import remote_auth
from pants_oci_cache.subsystem import OciCacheSubsystem


def rules() -> Iterable:
    return [*OciCacheSubsystem.rules(), *end_of_run.rules()]


__all__ = ["remote_auth", "rules"]
