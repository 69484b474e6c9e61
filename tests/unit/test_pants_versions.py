"""The plugin against the API of every Pants line from 2.17 to 2.33, as stub `pants` trees
(tests/pants_api_lines.py): it loads, `remote_auth` answers (provider reapi where the field
exists), and the end-of-run rule builds its callback; and no plugin module imports a name
that a supported line lacks. The real Pants engine with the 2.29+ layout is
tests/integration/test_pants_newer_layout.py."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from pants_api_lines import PANTS_LINES, PantsLine, stub_sources, write_pants_stubs

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO_ROOT / "src" / "python" / "pants_oci_cache"
CHECK_SCRIPT = REPO_ROOT / "tests" / "pants_line_check.py"


def _python_for(version: str) -> Optional[str]:
    """An interpreter of exactly `version` on this machine (PATH or pyenv), or None."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(path) for path in sorted(pyenv_root.glob(f"{version}.*/bin/python{version}"))]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"],
                capture_output=True, text=True,
            )
            found = probe.stdout.split()
            if len(found) == 2 and found[0] == version:
                return found[1]  # the interpreter itself, not a pyenv shim
    return None


def interpreter_for(line: PantsLine) -> str:
    """The line's own Python when this machine has it; else the closest older one from 3.10 on
    (3.14 is not installed on these machines: 3.13 stands in), else the test's own."""
    exact = _python_for(line.python)
    if exact:
        return exact
    wanted = tuple(int(part) for part in line.python.split("."))
    for minor in range(wanted[1] - 1, 9, -1):
        newer = _python_for(f"3.{minor}")
        if newer:
            return newer
    return sys.executable


def run_check(line: PantsLine, tmp_path: Path, python: str) -> "subprocess.CompletedProcess[str]":
    root = write_pants_stubs(line, tmp_path)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO_ROOT / "src" / "python")]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "STUB_PANTS_BUILDROOT": str(tmp_path),
    }
    return subprocess.run([python, str(CHECK_SCRIPT), line.name, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(PANTS_LINES))
def test_the_plugin_loads_and_answers_on_every_pants_line(name: str, tmp_path: Path) -> None:
    line = PANTS_LINES[name]
    python = interpreter_for(line)
    completed = run_check(line, tmp_path, python)
    assert completed.returncode == 0, f"Pants {line.releases} on {python}:\n{completed.stderr}"
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["provider"] == ("reapi" if line.provider_field else None)
    print(f"Pants {line.releases}: checked on Python {report['python']} ({python})")


@pytest.mark.parametrize("name", sorted(PANTS_LINES))
def test_the_stubs_reject_the_import_that_broke_on_2_29(name: str, tmp_path: Path) -> None:
    """The control: the import the plugin had before (AuthPluginResult from global_options)
    fails on 2.29 and later and works before, so these stubs would have caught that break."""
    line = PANTS_LINES[name]
    root = write_pants_stubs(line, tmp_path)
    completed = subprocess.run(
        [sys.executable, "-c", "from pants.option.global_options import AuthPluginResult, AuthPluginState"],
        env={"PYTHONPATH": str(root), "PATH": os.environ.get("PATH", "")}, capture_output=True, text=True,
    )
    if line.auth_types_module == "bootstrap_options":
        assert completed.returncode != 0 and "cannot import name 'AuthPluginResult'" in completed.stderr
    else:
        assert completed.returncode == 0, completed.stderr


def _top_level_names(source: str) -> Set[str]:
    names: Set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _pants_imports(nodes: List[ast.stmt]) -> List[Tuple[str, Tuple[str, ...]]]:
    return [
        (node.module, tuple(alias.name for alias in node.names))
        for node in nodes
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pants"
    ]


def _alternatives(node: ast.Try) -> Tuple[List[List[Tuple[str, Tuple[str, ...]]]], bool]:
    """The import alternatives of a try/except ImportError chain, newest first, and whether
    it ends in a non-import fallback (the name is optional)."""
    chains = [_pants_imports(node.body)]
    optional = False
    for handler in node.handlers:
        nested = [child for child in handler.body if isinstance(child, ast.Try)]
        if nested:
            inner, inner_optional = _alternatives(nested[0])
            chains.extend(inner)
            optional = optional or inner_optional
        elif _pants_imports(handler.body):
            chains.append(_pants_imports(handler.body))
        else:
            optional = True
    return chains, optional


def plugin_import_requirements() -> List[Tuple[str, List[List[Tuple[str, Tuple[str, ...]]]], bool]]:
    """(where, alternatives, optional) for every `from pants... import ...` in the plugin."""
    found = []
    for path in sorted(PLUGIN_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inside_try: Set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                alternatives, optional = _alternatives(node)
                if any(alternatives):
                    found.append((f"{path.name}:{node.lineno}", alternatives, optional))
                for child in ast.walk(node):
                    inside_try.add(id(child))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and id(node) not in inside_try:
                for requirement in _pants_imports([node]):
                    found.append((f"{path.name}:{node.lineno}", [[requirement]], False))
    return found


@pytest.mark.parametrize("name", sorted(PANTS_LINES))
def test_every_pants_name_the_plugin_imports_exists_in_every_line(name: str) -> None:
    sources = stub_sources(PANTS_LINES[name])
    exported: Dict[str, Set[str]] = {
        relative[: -len(".py")].replace("/", ".").replace(".__init__", ""): _top_level_names(text)
        for relative, text in sources.items()
    }

    def satisfied(imports: List[Tuple[str, Tuple[str, ...]]]) -> bool:
        return all(module in exported and set(names) <= exported[module] for module, names in imports)

    requirements = plugin_import_requirements()
    assert any("pants_compat.py" in where for where, _, _ in requirements)  # the fallbacks are seen
    for where, alternatives, optional in requirements:
        assert optional or any(satisfied(imports) for imports in alternatives), (
            f"{where}: none of {alternatives} exists in Pants {PANTS_LINES[name].releases}"
        )


def test_only_pants_compat_knows_where_the_moved_types_live() -> None:
    for path in PLUGIN_DIR.glob("*.py"):
        if path.name == "pants_compat.py":
            continue
        for module, names in _pants_imports(list(ast.walk(ast.parse(path.read_text(encoding="utf-8"))))):  # type: ignore[arg-type]
            assert module != "pants.option.bootstrap_options", path
            assert not {"AuthPluginResult", "AuthPluginState", "RemoteProvider"} & set(names), (path, module, names)


PANTS_TYPES = {"AuthPluginResult", "WorkunitsCallbackFactory", "UnionRule", "AuthPluginState", "RemoteProvider"}


def test_every_pants_type_is_constructed_by_keyword() -> None:
    """Fields were inserted (AuthPluginResult.provider in 2.20) and classes rewritten (UnionRule
    in Rust from 2.29): positional arguments are how the 2.20 change would break a plugin."""
    calls = 0
    for path in PLUGIN_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PANTS_TYPES:
                calls += 1
                assert not node.args, f"{path.name}:{node.lineno}: {node.func.id}(...) with positional arguments"
    assert calls >= 3  # AuthPluginResult, WorkunitsCallbackFactory, UnionRule
