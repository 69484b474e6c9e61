"""The packages whose attributes are imported on first use (oci_cache/lazy_exports.py):
every export resolves to what its submodule defines, and none is shadowed by a
submodule of the same name (importing that submodule would replace the attribute)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

LAZY_PACKAGES = ["oci_cache.oci", "oci_cache.image_format", "oci_cache.cache_image"]


@pytest.mark.parametrize("package_name", LAZY_PACKAGES)
def test_every_export_resolves_and_no_submodule_shadows_one(package_name: str) -> None:
    package = importlib.import_module(package_name)
    submodules = {info.name for info in pkgutil.iter_modules(package.__path__)}
    exports = package._EXPORTS
    assert set(package.__all__) == set(exports)
    assert not (set(exports) & submodules), "an export named like a submodule gets shadowed by it"
    for name, submodule in exports.items():
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), name
        assert value is getattr(importlib.import_module(f"{package_name}.{submodule}"), name)
    with pytest.raises(AttributeError):
        getattr(package, "no_such_name")


def test_a_small_module_does_not_import_the_registry_client() -> None:
    """The point of it: `serve` starts without urllib3/ssl when they are not needed yet."""
    code = (
        "import sys, oci_cache.oci.errors, oci_cache.image_format.compression, oci_cache.cache_entries; "
        "print(sorted(m for m in ('urllib3', 'ssl', 'oci_cache.oci.registry_client') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
