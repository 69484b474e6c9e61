"""Stub `pants` module trees, one per line of Pants releases whose plugin-facing API differs,
built from what the Pants source says at the release tags (pantsbuild/pants, release_2.17.1 …
release_2.33.0; docs/pants.md, "Supported Pants versions"):

    root = write_pants_stubs(PANTS_LINES["2.29"], tmp_path)   # then put `root` first on sys.path

A stub module defines only the names that version has, so importing a name the version lacks
fails as it would in that Pants (`ImportError: cannot import name ...`). The stubs also behave
as that version does where the plugin depends on it: the fields (and their order) of
AuthPluginResult and its address check, which Options methods exist, whether a Subsystem's
`register_options` hook is honoured, the default remote headers, and whether Get/MultiGet exist.
Used by tests/unit/test_pants_versions.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict


@dataclass(frozen=True)
class PantsLine:
    name: str
    releases: str
    python: str
    """The Python the release's own interpreter is (src/python/pants/BUILD, pants.toml)."""
    auth_types_module: str
    """Where AuthPluginResult / AuthPluginState live: global_options (to 2.28), bootstrap_options (2.29+)."""
    provider_field: bool
    """2.20+: RemoteProvider and AuthPluginResult.provider."""
    rust_options_parser: bool
    """2.25+: no Options.bootstrap_option_values()/get_parser(), no register_options hook, default headers {}."""
    get_and_multiget: bool
    """Up to 2.31: pants.engine.rules has Get and MultiGet (removed in 2.32)."""


PANTS_LINES: Dict[str, PantsLine] = {
    line.name: line
    for line in (
        PantsLine("2.17", "2.17-2.19", "3.9", "global_options", False, False, True),
        PantsLine("2.20", "2.20-2.24", "3.9", "global_options", True, False, True),
        PantsLine("2.25", "2.25-2.28", "3.11", "global_options", True, True, True),
        PantsLine("2.29", "2.29-2.31", "3.11", "bootstrap_options", True, True, True),
        PantsLine("2.32", "2.32-2.33", "3.14", "bootstrap_options", True, True, False),
    )
}

_OPTION_TYPES = '''
class _Option:
    def __init__(self, *flags, default=None, help="", **kwargs):
        self.default = default
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return getattr(instance.options, self.name)


class StrOption(_Option): pass
class StrListOption(_Option): pass
class BoolOption(_Option): pass
class IntOption(_Option): pass
class DictOption(_Option): pass


class EnumOption(_Option):
    def __init__(self, *flags, default=None, enum_type=None, help="", **kwargs):
        super().__init__(*flags, default=default, help=help)
'''

_SUBSYSTEM = '''
from pants.option import option_types

HONOURS_REGISTER_OPTIONS = {honours_register_options}


class Subsystem:
    options_scope = None
    help = ""

    def __init__(self, options):
        self.options = options

    @classmethod
    def option_defaults(cls):
        """What the options parser registers for the scope: the option_types descriptors (and,
        before 2.25, whatever a `register_options` classmethod registers)."""
        defaults = {{}}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, option_types._Option):
                    defaults[name] = value.default
        if HONOURS_REGISTER_OPTIONS and "register_options" in cls.__dict__:
            def register(flag, default=None, **kwargs):
                defaults[flag.lstrip("-").replace("-", "_")] = default
            cls.register_options(register)
        return defaults

    @classmethod
    def rules(cls):
        return [("subsystem", cls)]
'''

_OPTIONS = '''
import types


class Options:
    def __init__(self, scopes):
        self._scopes = scopes

    def for_scope(self, scope):
        return types.SimpleNamespace(**self._scopes[scope])
{python_parser_methods}'''

_PYTHON_PARSER_METHODS = '''
    def bootstrap_option_values(self):
        return self.for_scope("")

    def get_parser(self, scope):
        return object()
'''

_AUTH_TYPES = '''
@enum.unique
class AuthPluginState(Enum):
    OK = "ok"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class AuthPluginResult:
    state: AuthPluginState
    store_headers: dict
    execution_headers: dict
{provider_field}    store_address: Optional[str] = None
    execution_address: Optional[str] = None
    instance_name: Optional[str] = None
    expiration: Optional[datetime] = None
    plugin_name: Optional[str] = None

    def __post_init__(self):
        schemes = {schemes}
        for name in ("store_address", "execution_address"):
            address = getattr(self, name)
            if address and not any(address.startswith(scheme + "://") for scheme in schemes):
                raise ValueError(f"Invalid `{{name}}` in `AuthPluginResult`: {{address}}")

    @property
    def is_available(self):
        return self.state == AuthPluginState.OK
'''

_REMOTE_PROVIDER = '''
class RemoteProvider(Enum):
    reapi = "reapi"
    experimental_file = "experimental-file"
    experimental_github_actions_cache = "experimental-github-actions-cache"

    def schemes(self):
        return {
            "reapi": ("grpc", "grpcs"),
            "experimental-file": ("file",),
            "experimental-github-actions-cache": ("http", "https"),
        }[self.value]
'''

_OPTIONS_MODULE_HEADER = '''
import enum
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Optional

from pants.option.option_types import BoolOption, DictOption
from pants.option.subsystem import Subsystem
'''

_GLOBAL_OPTIONS_CLASS = '''

DEFAULT_REMOTE_HEADERS = {default_headers}


class GlobalOptions(Subsystem):
    options_scope = ""
    remote_cache_read = BoolOption(default=False)
    remote_cache_write = BoolOption(default=False)
    remote_store_headers = DictOption(default=DEFAULT_REMOTE_HEADERS)
    remote_execution_headers = DictOption(default=DEFAULT_REMOTE_HEADERS)
'''

_RULES = '''
import sys


def rule(func=None, **kwargs):
    def mark(function):
        function.rule_marker = True
        return function
    return mark(func) if func is not None else mark


def collect_rules(*namespaces):
    namespace = namespaces[0] if namespaces else sys._getframe(1).f_globals
    return [value for value in namespace.values() if callable(value) and getattr(value, "rule_marker", False)]


class QueryRule:
    def __init__(self, output_type, input_types):
        self.output_type = output_type
        self.input_types = input_types
{get_and_multiget}'''

_GET_AND_MULTIGET = '''

class Get:
    def __init__(self, output_type, *args):
        self.output_type = output_type


async def MultiGet(*gets):
    raise NotImplementedError
'''

_UNIONS = '''
from dataclasses import dataclass


def union(cls=None, **kwargs):
    def mark(klass):
        klass.union_marker = True
        return klass
    return mark(cls) if cls is not None else mark


@dataclass(frozen=True)
class UnionRule:
    union_base: type
    union_member: type
'''

_STREAMING = '''
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional

from pants.engine.unions import union


class WorkunitsCallback(ABC):
    @abstractmethod
    def __call__(self, *, started_workunits, completed_workunits, finished, context):
        ...

    @property
    @abstractmethod
    def can_finish_async(self):
        ...


@dataclass(frozen=True)
class WorkunitsCallbackFactory:
    callback_factory: Callable[[], Optional[WorkunitsCallback]]


@union
class WorkunitsCallbackFactoryRequest:
    pass
'''

_BUILD_ENVIRONMENT = '''
import os


def get_buildroot():
    return os.environ["STUB_PANTS_BUILDROOT"]
'''


def _auth_types(line: PantsLine) -> str:
    provider_field = "    provider: RemoteProvider = RemoteProvider.reapi\n" if line.provider_field else ""
    schemes = "self.provider.schemes()" if line.provider_field else '("grpc", "grpcs")'
    return _AUTH_TYPES.format(provider_field=provider_field, schemes=schemes)


def stub_sources(line: PantsLine) -> Dict[str, str]:
    """Relative path -> source text of the stub `pants` tree for `line`."""
    default_headers = "{}" if line.rust_options_parser else '{"user-agent": "pants/' + line.name + '.0"}'
    global_options = _OPTIONS_MODULE_HEADER
    bootstrap_options = None
    option_types_block = (_REMOTE_PROVIDER if line.provider_field else "") + _auth_types(line)
    if line.auth_types_module == "global_options":
        global_options += option_types_block
    else:
        bootstrap_options = _OPTIONS_MODULE_HEADER + option_types_block
    global_options += _GLOBAL_OPTIONS_CLASS.format(default_headers=default_headers)
    sources = {
        "pants/__init__.py": "",
        "pants/version.py": f'VERSION = "{line.name}.0"\n',
        "pants/base/__init__.py": "",
        "pants/base/build_environment.py": _BUILD_ENVIRONMENT,
        "pants/option/__init__.py": "",
        "pants/option/option_types.py": _OPTION_TYPES,
        "pants/option/subsystem.py": _SUBSYSTEM.format(honours_register_options=not line.rust_options_parser),
        "pants/option/options.py": _OPTIONS.format(
            python_parser_methods="" if line.rust_options_parser else _PYTHON_PARSER_METHODS
        ),
        "pants/option/global_options.py": global_options,
        "pants/engine/__init__.py": "",
        "pants/engine/rules.py": _RULES.format(get_and_multiget=_GET_AND_MULTIGET if line.get_and_multiget else ""),
        "pants/engine/unions.py": _UNIONS,
        "pants/engine/streaming_workunit_handler.py": _STREAMING,
    }
    if bootstrap_options is not None:
        sources["pants/option/bootstrap_options.py"] = bootstrap_options
    return sources


def write_pants_stubs(line: PantsLine, directory: Path) -> Path:
    """Writes the stub tree under directory/pants-<line>/ and returns that sys.path entry."""
    root = directory / f"pants-{line.name}"
    for relative, text in stub_sources(line).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


__all__ = ["PANTS_LINES", "PantsLine", "stub_sources", "write_pants_stubs"]
