"""A copy of the installed Pants 2.17.1 (.venv-pants) whose plugin-facing modules are rewritten
the way later Pants releases changed them: a real Pants engine with the newer layout, for
tests/integration/test_pants_newer_layout.py.

    pants = build_newer_layout(PANTS, tmp_path / "pants-2.29-layout")   # a launcher script
    subprocess.run([str(pants), "--version"])

The copy is a tree of symbolic links to the installed `pants` package, except the rewritten
files (so it takes a second and no space). What is rewritten, as the Pants source at the
release tags has it:

- 2.29: `AuthPluginResult`, `AuthPluginState` (and `RemoteProvider`) live in the new module
  `pants.option.bootstrap_options`, and `pants.option.global_options` no longer has them
  (its own code refers to them through that module; pants_daemon_core imports them from it).
- 2.20: `AuthPluginResult` has the fourth field `provider` (default reapi), checked against
  the addresses as 2.20 checks them; the engine takes the provider from the plugin's result
  (this 2.17 engine speaks only REAPI, so another provider is an error here).
- 2.25: the default `remote_store_headers` / `remote_execution_headers` are `{}` and the
  user-agent header is added after the auth plugin ran; the `options` handed to
  `remote_auth` has no `bootstrap_option_values()` / `get_parser()`; a Subsystem's
  `register_options` hook is no longer called.

Each rewrite checks that the text it replaces is there, so a different Pants fails loudly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

BOOTSTRAP_OPTIONS = '''"""Rewritten for the test: the 2.29+ home of the auth plugin types (see tests/pants_newer_layout.py)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from pants.option.errors import OptionsError
from pants.version import VERSION


class RemoteProvider(Enum):
    """2.20+: which remote provider to use."""

    reapi = "reapi"
    experimental_file = "experimental-file"
    experimental_github_actions_cache = "experimental-github-actions-cache"

    def _supported_schemes(self) -> list[str]:
        return {
            "reapi": ["grpc", "grpcs"],
            "experimental-file": ["file"],
            "experimental-github-actions-cache": ["http", "https"],
        }[self.value]

    def validate_address(self, addr: str, address_source: str, provider_source: str) -> None:
        if not any(addr.startswith(f"{scheme}://") for scheme in self._supported_schemes()):
            raise OptionsError(
                f"Value `{addr}` from {address_source} is invalid: it doesn't have a scheme that "
                f"is supported by provider `{self.value}` from {provider_source}."
            )


@enum.unique
class AuthPluginState(Enum):
    OK = "ok"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class AuthPluginResult:
    state: AuthPluginState
    store_headers: dict[str, str]
    execution_headers: dict[str, str]
    provider: RemoteProvider = RemoteProvider.reapi
    store_address: str | None = None
    execution_address: str | None = None
    instance_name: str | None = None
    expiration: datetime | None = None
    plugin_name: str | None = None

    def __post_init__(self) -> None:
        name = self.plugin_name or ""
        plugin_context = f"in `AuthPluginResult` returned from `[GLOBAL].remote_auth_plugin` {name}"
        for field_name in ("store_address", "execution_address"):
            address = getattr(self, field_name)
            if address:
                self.provider.validate_address(
                    address,
                    address_source=f"`{field_name}` {plugin_context}",
                    provider_source="`provider` in same result",
                )

    @property
    def is_available(self) -> bool:
        return self.state == AuthPluginState.OK


def with_user_agent(headers: dict[str, str]) -> dict[str, str]:
    """2.25+: Pants adds its user-agent after the plugin ran, unless one is set."""
    if any(key.lower() == "user-agent" for key in headers):
        return headers
    return {"user-agent": f"pants/{VERSION}", **headers}


def provider_of(result: AuthPluginResult) -> RemoteProvider:
    """2.20+: the plugin's result decides the provider (this 2.17 engine has REAPI only)."""
    if result.provider is not RemoteProvider.reapi:
        raise OptionsError(f"provider `{result.provider.value}` is not supported by this engine")
    return result.provider


class OptionsWithoutPythonParser:
    """2.25+ (the Rust options parser): the Options handed to `remote_auth` have no
    `bootstrap_option_values()` and no `get_parser()`."""

    _REMOVED = ("bootstrap_option_values", "get_parser")

    def __init__(self, options: Any) -> None:
        self._options = options

    def __getattr__(self, name: str) -> Any:
        if name in self._REMOVED:
            raise AttributeError(f"'Options' object has no attribute '{name}'")
        return getattr(self._options, name)
'''

GLOBAL_OPTIONS_IMPORT_ANCHOR = "from pants.option.subsystem import Subsystem\n"
AUTH_TYPES_START = "@enum.unique\nclass AuthPluginState(Enum):\n"
AUTH_TYPES_END = "@dataclass(frozen=True)\nclass DynamicRemoteOptions:\n"

# (file, old text, new text): every one must match exactly once.
REPLACEMENTS: List[Tuple[str, str, str]] = [
    (
        "pants/option/global_options.py",
        GLOBAL_OPTIONS_IMPORT_ANCHOR,
        GLOBAL_OPTIONS_IMPORT_ANCHOR + "from pants.option import bootstrap_options as _bootstrap_options\n",
    ),
    (
        "pants/option/global_options.py",
        "        auth_plugin_result = cast(\n            AuthPluginResult,\n",
        "        auth_plugin_result = cast(\n            _bootstrap_options.AuthPluginResult,\n",
    ),
    (
        "pants/option/global_options.py",
        "                options=full_options,\n",
        "                options=_bootstrap_options.OptionsWithoutPythonParser(full_options),\n",
    ),
    (
        "pants/option/global_options.py",
        "        execution_headers = auth_plugin_result.execution_headers\n",
        "        _bootstrap_options.provider_of(auth_plugin_result)\n"
        "        execution_headers = auth_plugin_result.execution_headers\n",
    ),
    (
        "pants/option/global_options.py",
        '    remote_store_headers={\n        "user-agent": f"pants/{VERSION}",\n    },\n',
        "    remote_store_headers={},\n",
    ),
    (
        "pants/option/global_options.py",
        '    remote_execution_headers={\n        "user-agent": f"pants/{VERSION}",\n    },\n',
        "    remote_execution_headers={},\n",
    ),
    (
        "pants/option/global_options.py",
        "            remote_store_headers=dynamic_remote_options.store_headers,\n",
        "            remote_store_headers=_bootstrap_options.with_user_agent(dynamic_remote_options.store_headers),\n",
    ),
    (
        "pants/option/global_options.py",
        "            remote_execution_headers=dynamic_remote_options.execution_headers,\n",
        "            remote_execution_headers=_bootstrap_options.with_user_agent(dynamic_remote_options.execution_headers),\n",
    ),
    (
        "pants/pantsd/pants_daemon_core.py",
        "from pants.option.global_options import AuthPluginResult, DynamicRemoteOptions\n",
        "from pants.option.bootstrap_options import AuthPluginResult\n"
        "from pants.option.global_options import DynamicRemoteOptions\n",
    ),
    (
        "pants/option/subsystem.py",
        '        if "register_options" in cls.__dict__:\n            cls.register_options(register)  # type: ignore[attr-defined]\n',
        "",
    ),
]


def _replace_once(text: str, old: str, new: str, where: str) -> str:
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"{where}: expected the text to rewrite once, found it {count} times: {old!r}")
    return text.replace(old, new)


def rewritten_sources(site_packages: Path) -> Dict[str, str]:
    """Relative path -> new text of every file the newer layout changes or adds."""
    texts: Dict[str, str] = {}

    def current(relative: str) -> str:
        if relative not in texts:
            texts[relative] = (site_packages / relative).read_text(encoding="utf-8")
        return texts[relative]

    global_options = current("pants/option/global_options.py")
    start, end = global_options.find(AUTH_TYPES_START), global_options.find(AUTH_TYPES_END)
    if start < 0 or end < start:
        raise AssertionError("global_options.py: the AuthPluginState/AuthPluginResult block was not found")
    texts["pants/option/global_options.py"] = global_options[:start] + global_options[end:]
    for relative, old, new in REPLACEMENTS:
        texts[relative] = _replace_once(current(relative), old, new, relative)
    leftover = [
        line for line in texts["pants/option/global_options.py"].splitlines()
        if "AuthPluginResult" in line and "_bootstrap_options." not in line and "AuthPluginResult |" not in line
    ]
    if leftover:  # annotations ("AuthPluginResult | None") are strings, never evaluated
        raise AssertionError(f"global_options.py still uses AuthPluginResult directly: {leftover}")
    texts["pants/option/bootstrap_options.py"] = BOOTSTRAP_OPTIONS
    return texts


def build_newer_layout(pants_script: Path, destination: Path) -> Path:
    """The rewritten copy of the Pants that `pants_script` runs; returns its launcher script."""
    python = pants_script.parent / "python"
    (site_packages,) = (pants_script.parent.parent / "lib").glob("python3.*/site-packages")
    source = site_packages / "pants"
    target = destination / "site" / "pants"
    for directory, subdirectories, files in os.walk(source):
        relative = Path(directory).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            (target / relative / name).symlink_to(Path(directory) / name)
    for relative, text in rewritten_sources(site_packages).items():
        path = destination / "site" / relative
        if path.is_symlink():
            path.unlink()
        path.write_text(text, encoding="utf-8")
    launcher = destination / "bin" / "pants"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(
        f"#!{python}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(destination / 'site')!r})\n"
        "from pants.bin.pants_loader import main\n"
        "sys.exit(main())\n",
        encoding="utf-8",
    )
    launcher.chmod(0o755)
    return launcher


__all__ = ["build_newer_layout", "rewritten_sources"]
