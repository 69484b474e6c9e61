"""Entry point Pants loads for `backend_packages = ["pants_oci_cache"]`."""

from __future__ import annotations

from typing import Iterable

from pants_oci_cache.subsystem import OciCacheSubsystem


def rules() -> Iterable:
    return [*OciCacheSubsystem.rules()]
