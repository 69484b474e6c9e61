#!/usr/bin/env python3
"""Does `[GLOBAL].plugins = ["pants-oci-cache"]` resolve on every Pants line, with wheels for
the Python that line runs? Prints, per line, what pip picks (or why it cannot).

    scripts/check_plugin_resolves.py            # needs PyPI; about a minute

Pants resolves plugins with everything in its own environment pinned (`name==version` of
each installed distribution, pants/init/plugin_resolver.py). Those pins, for the packages
the daemon's dependencies touch, are PINS below: from 3rdparty/python/user_reqs.lock at each
release tag (the release PEX the `pants` launcher installs is built from it); 2.17.1 comes
from PyPI, whose wheel pins only typing-extensions among them. For each line this builds
this repository's wheel once and runs

    pip download --python-version PY --only-binary=:all: --platform manylinux... \\
        -c <the line's pins> <the wheel>

which resolves the dependencies exactly as a resolve for that interpreter would, wheels only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPO_ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
WATCHED = ("grpcio", "protobuf", "zstandard", "urllib3", "isal", "typing_extensions")

# (releases, Python, pins in Pants' own environment)
PINS: List[Tuple[str, str, Dict[str, str]]] = [
    ("2.17.1", "3.9", {"typing-extensions": "4.3.0"}),
    ("2.18", "3.9", {"typing-extensions": "4.3.0", "urllib3": "2.0.3"}),
    ("2.19", "3.9", {"typing-extensions": "4.3.0", "urllib3": "2.0.7"}),
    ("2.20-2.22", "3.9", {"typing-extensions": "4.3.0", "urllib3": "2.2.1"}),
    ("2.23", "3.9", {"typing-extensions": "4.12.2", "urllib3": "2.2.2"}),
    ("2.24", "3.9", {"typing-extensions": "4.12.2", "urllib3": "1.26.20"}),
    ("2.25-2.26", "3.11", {"typing-extensions": "4.12.2", "urllib3": "1.26.20"}),
    ("2.27", "3.11", {"typing-extensions": "4.13.2", "urllib3": "1.26.20"}),
    ("2.28", "3.11", {"typing-extensions": "4.14.1", "urllib3": "1.26.20"}),
    ("2.29", "3.11", {"typing-extensions": "4.15.0", "urllib3": "1.26.20"}),
    ("2.30-2.31", "3.11", {"typing-extensions": "4.15.0", "urllib3": "2.5.0"}),
    ("2.32", "3.14", {"typing-extensions": "4.15.0", "urllib3": "2.6.3"}),
    ("2.33", "3.14", {"typing-extensions": "4.15.0", "urllib3": "2.7.0", "protobuf": "6.33.6"}),
]


def pip(*args: str) -> "subprocess.CompletedProcess[str]":
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=600)


def picked(directory: Path) -> Dict[str, str]:
    versions = {}
    for wheel in directory.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if name.lower() in WATCHED:
            versions[name.lower()] = version
    return versions


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        built = pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(scratch / "wheel"), str(REPO_ROOT))
        if built.returncode != 0:
            print(built.stderr, file=sys.stderr)
            return 2
        (wheel,) = (scratch / "wheel").glob("pants_oci_cache-*.whl")
        failures = 0
        print(f"{'Pants':<10} {'Python':<6} result")
        for releases, python, pins in PINS:
            constraints = scratch / f"pins-{releases}.txt"
            constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
            destination = scratch / releases
            platform_args = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
            result = pip("download", "-q", "--python-version", python, "--only-binary=:all:", *platform_args,
                         "-c", str(constraints), "-d", str(destination), str(wheel))
            if result.returncode != 0:
                failures += 1
                reason = re.findall(r"ERROR: .*", result.stderr) or [result.stderr.strip()[-300:]]
                print(f"{releases:<10} {python:<6} UNRESOLVABLE: {reason[0]}")
                continue
            versions = picked(destination)
            print(f"{releases:<10} {python:<6} " + ", ".join(f"{name} {versions[name]}" for name in sorted(versions)))
        return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
