"""Package attributes imported on first use (PEP 562), so that importing one small
module of a package (say `oci_cache.oci.errors`) does not import all of its
siblings (the registry client, urllib3, ssl). The daemon's start-up, on the
critical path of a Pants run on a fresh machine, pays only for what it uses.

    # in a package's __init__.py
    __getattr__ = lazy_exports(__name__, {"RegistryTarget": "registry_target", ...})
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: attribute NAME comes from the submodule
    `exports[NAME]` (relative to the package), imported on first access and cached."""
    table: Dict[str, str] = dict(exports)

    def __getattr__(name: str) -> Any:
        submodule = table.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{submodule}")
        value = getattr(module, name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__


__all__ = ["lazy_exports"]
