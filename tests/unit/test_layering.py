"""The house rules of which package may import which (docs/architecture.md, "Rules of the
house"), checked by reading every import statement of the source tree with `ast` —
including imports inside functions and under `if TYPE_CHECKING:`.

The checker is also run on a small synthetic tree holding one violation of each rule, so
that this test fails when a forbidden import is added, not only passes when there is none.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src" / "python"


@dataclass(frozen=True)
class Rule:
    importer: str
    """The package (or module) the rule is about, e.g. "oci_cache.server"."""
    forbidden: Tuple[str, ...]
    """What it must not import (a package forbids all its modules)."""
    why: str
    exempt: Tuple[str, ...] = ()
    """Parts of `importer` the rule does not apply to."""


RULES: Tuple[Rule, ...] = (
    Rule(
        "oci_cache.server",
        ("oci_cache.oci", "oci_cache.image_format", "oci_cache.cli", "oci_cache.daemon"),
        "the gRPC layer serves whatever serving stack it is given; it knows no registry or image format",
    ),
    Rule(
        "oci_cache.oci",
        ("oci_cache.store", "oci_cache.cache_image", "oci_cache.server", "oci_cache.cli", "oci_cache.daemon"),
        "the OCI transport moves blobs and manifests; it knows nothing of caches",
    ),
    Rule(
        "oci_cache.oci.transport",
        (
            "oci_cache.oci.registry_client",
            "oci_cache.oci.registry_target",
            "oci_cache.oci.layout",
            "oci_cache.oci.target",
            "oci_cache.oci.target_opener",
            "oci_cache.oci.transfer",
        ),
        "the transport layers know HTTP, not the OCI API: the verbs sit above them",
    ),
    Rule(
        "oci_cache.image_format",
        ("oci_cache.store", "oci_cache.cache_image", "oci_cache.server", "oci_cache.cli", "oci_cache.daemon"),
        "the format layer turns entries into layers and back; it knows nothing of stores or transports",
    ),
    Rule(
        "oci_cache.store",
        ("oci_cache.cache_image", "oci_cache.oci", "oci_cache.image_format", "oci_cache.server", "oci_cache.cli"),
        "the store tiers and the completeness rule are the bottom of the serving stack",
    ),
    Rule(
        "oci_cache.store.lru_index",
        ("oci_cache.store.local_store", "oci_cache.store.action_journal", "oci_cache.store.durable_files"),
        "the LRU index is memory only, under the store writer: no files, no journal",
    ),
    Rule(
        "oci_cache.store.action_journal",
        ("oci_cache.store.local_store", "oci_cache.store.lru_index"),
        "the action journal sits under the store writer and knows nothing of its index",
    ),
    Rule(
        "oci_cache.daemon",
        ("oci_cache.server", "oci_cache.cache_image", "oci_cache.cli"),
        "the client side of the daemon (launch, control calls) runs in Pants' process: no server code",
    ),
    Rule(
        "oci_cache",
        ("oci_cache.cli", "pants_oci_cache"),
        "the core is a library under the command line and the plugin, never above them",
        exempt=("oci_cache.cli",),
    ),
)


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int
    rule: Rule

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.rule.importer}: {self.rule.why})"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST) -> Iterator[Tuple[str, int]]:
    """Every module an import statement names (`from a import b` names a and a.b: b may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def find_violations(root: Path, rules: Sequence[Rule] = RULES) -> List[Violation]:
    found: List[Violation] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(root, path)
        if "._proto" in f".{module}":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for imported, line in imported_modules(tree):
            for rule in rules:
                if not _within(module, rule.importer) or any(_within(module, exempt) for exempt in rule.exempt):
                    continue
                if any(_within(imported, forbidden) for forbidden in rule.forbidden):
                    found.append(Violation(module, imported, line, rule))
    return list(dict.fromkeys(found))


def test_the_source_tree_keeps_the_house_rules() -> None:
    assert (SOURCE_ROOT / "oci_cache").is_dir()
    violations = find_violations(SOURCE_ROOT)
    assert not violations, "forbidden imports:\n" + "\n".join(str(v) for v in violations)


def _write(root: Path, module: str, source: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(root).parents:
        init = root / parent / "__init__.py"
        if parent != Path(".") and not init.exists():
            init.write_text("")
    path.write_text(source)


def test_the_checker_reports_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    _write(tmp_path, "oci_cache.server.cas", "from oci_cache.oci.registry_client import RegistryClient\n")
    _write(tmp_path, "oci_cache.oci.layout", "def f():\n    import oci_cache.store.local_store\n")
    _write(
        tmp_path,
        "oci_cache.image_format.manifest",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from oci_cache import cache_image\n",
    )
    _write(tmp_path, "oci_cache.store.local_store", "from oci_cache.image_format.entry_index import EntryIndex\n")
    _write(tmp_path, "oci_cache.daemon.launcher", "from oci_cache.server.grpc_server import build_server\n")
    _write(tmp_path, "oci_cache.cache_image.exporting.exporter", "from oci_cache.cli.progress import Progress\n")
    _write(tmp_path, "oci_cache.sizes", "import pants_oci_cache.summary\n")
    _write(tmp_path, "oci_cache.oci.transport.retries", "from oci_cache.oci.target import Manifest\n")
    _write(tmp_path, "oci_cache.store.lru_index", "from oci_cache.store.durable_files import unlink_quietly\n")
    _write(tmp_path, "oci_cache.store.action_journal", "from oci_cache.store import local_store\n")

    reported = {(v.module, v.rule.importer) for v in find_violations(tmp_path)}

    assert reported == {
        ("oci_cache.server.cas", "oci_cache.server"),
        ("oci_cache.oci.layout", "oci_cache.oci"),
        ("oci_cache.image_format.manifest", "oci_cache.image_format"),
        ("oci_cache.store.local_store", "oci_cache.store"),
        ("oci_cache.daemon.launcher", "oci_cache.daemon"),
        ("oci_cache.cache_image.exporting.exporter", "oci_cache"),
        ("oci_cache.sizes", "oci_cache"),
        ("oci_cache.oci.transport.retries", "oci_cache.oci.transport"),
        ("oci_cache.store.lru_index", "oci_cache.store.lru_index"),
        ("oci_cache.store.action_journal", "oci_cache.store.action_journal"),
    }


def test_the_checker_allows_what_the_rules_allow(tmp_path: Path) -> None:
    _write(tmp_path, "oci_cache.cli.serve_command", "from oci_cache.cli.progress import Progress\nimport oci_cache.server\n")
    _write(tmp_path, "oci_cache.cache_image.importing.importer", "from oci_cache.oci.target import ImageTarget\n")
    _write(tmp_path, "oci_cache.server.daemon_runtime", "from oci_cache.store.metrics import StoreMetrics\n")
    _write(tmp_path, "pants_oci_cache.register", "from oci_cache.daemon.launcher import launch\n")
    _write(tmp_path, "oci_cache.oci.registry_client", "from oci_cache.oci.transport.stack import RegistryTransport\n")
    _write(tmp_path, "oci_cache.store.local_store", "from oci_cache.store.lru_index import LruIndex\n")
    assert find_violations(tmp_path) == []
