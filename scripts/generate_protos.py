"""Regenerate the Python code for everything under protos/.

    python scripts/generate_protos.py          # rewrite src/python/oci_cache/_proto
    python scripts/generate_protos.py --check  # exit 1 if the committed code is stale

The code is generated with the protoc bundled in grpcio-tools (the version pinned in
requirements-dev.txt), then its imports are rewritten so that every generated module
lives inside the `oci_cache._proto` package instead of claiming the top-level
`google` and `build` packages (which other libraries also own).

The generated *_pb2_grpc.py modules refuse, at import, a grpcio older than the
grpcio-tools that wrote them, so that version must be pyproject.toml's grpcio floor
(the oldest grpcio a `[GLOBAL].plugins` resolve in Pants may pick): this script
stops when they differ.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_PACKAGE = "oci_cache._proto"
OUTPUT_DIR = REPO_ROOT / "src" / "python" / "oci_cache" / "_proto"
# Top-level proto packages we own a copy of; google.protobuf stays with the runtime.
OWNED_ROOTS = ("build", "google.rpc", "google.bytestream", "oci_cache")


# `"grpcio>=1.74.0"`, or with an environment marker (`"grpcio>=1.75.1; python_version >= '3.14'"`).
GRPCIO_FLOOR = re.compile(r'"grpcio>=([0-9][0-9.]*)[";]')


def grpcio_floor() -> str:
    """The lowest grpcio version pyproject.toml requires (on any Python)."""
    found = GRPCIO_FLOOR.findall((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if not found:
        raise SystemExit('pyproject.toml has no "grpcio>=VERSION" requirement')
    return min(found, key=lambda version: tuple(int(part) for part in version.split(".")))


def check_generator_version() -> None:
    from importlib.metadata import version  # the generator's own version, not the runtime's

    tools = version("grpcio-tools")
    floor = grpcio_floor()
    if tools != floor:
        raise SystemExit(
            f"grpcio-tools {tools} is installed, but pyproject.toml requires grpcio>={floor}: generated "
            f"code checks grpcio >= the generator's version, so generate with grpcio-tools=={floor} "
            "(requirements-dev.txt) or change both together"
        )


def proto_files() -> List[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def run_protoc(output_dir: Path) -> None:
    from grpc_tools import protoc  # imported late: only the generator needs it

    include_dir = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include_dir}",
        f"--python_out={output_dir}",
        f"--pyi_out={output_dir}",
        f"--grpc_python_out={output_dir}",
        *[str(path.relative_to(PROTO_ROOT)) for path in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def rewrite_imports(text: str) -> str:
    owned = "|".join(re.escape(root) for root in OWNED_ROOTS)
    pattern = re.compile(rf"^(from|import) ((?:{owned})(?:\.| ))", flags=re.M)
    return pattern.sub(rf"\1 {OUTPUT_PACKAGE}.\2", text)


def generate(output_dir: Path) -> Dict[str, str]:
    """Returns {relative path: content} of the generated package."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        run_protoc(scratch_dir)
        files: Dict[str, str] = {}
        for path in sorted(scratch_dir.rglob("*.py*")):
            relative = path.relative_to(scratch_dir).as_posix()
            files[relative] = rewrite_imports(path.read_text())
        packages = {"__init__.py"}
        for relative in list(files):
            parts = relative.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                packages.add("/".join(parts[:depth]) + "/__init__.py")
        for package in packages:
            files.setdefault(package, '"""Generated protobuf code: see scripts/generate_protos.py."""\n')
    return files


def write(files: Dict[str, str], output_dir: Path) -> None:
    if output_dir.exists():
        shutil.rmtree(output_dir)
    for relative, content in files.items():
        target = output_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def check(files: Dict[str, str], output_dir: Path) -> int:
    committed = {
        path.relative_to(output_dir).as_posix(): path.read_text()
        for path in output_dir.rglob("*.py*")
        if "__pycache__" not in path.parts
    } if output_dir.exists() else {}
    stale = sorted(set(files) ^ set(committed)) + sorted(
        name for name in set(files) & set(committed) if files[name] != committed[name]
    )
    for name in stale:
        print(f"stale: {name}", file=sys.stderr)
        diff = difflib.unified_diff(
            committed.get(name, "").splitlines(), files.get(name, "").splitlines(), lineterm="", n=1
        )
        for line in list(diff)[:20]:
            print("   " + line, file=sys.stderr)
    if stale:
        print("run: python scripts/generate_protos.py", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args()
    check_generator_version()
    files = generate(OUTPUT_DIR)
    if args.check:
        return check(files, OUTPUT_DIR)
    write(files, OUTPUT_DIR)
    print(f"wrote {len(files)} files under {OUTPUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
