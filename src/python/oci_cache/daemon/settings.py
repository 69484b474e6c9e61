"""What a daemon is started with, and the two fingerprints derived from it.

- The **directory key** names the daemon's directory under the state dir: the
  repository (its real path) and the cache it serves (cache_from, cache_to). One
  daemon, one local store and one token per repository and cache configuration.
- The **config fingerprint** covers everything the daemon is started with (the key,
  plus listen address, store size, idle timeout, interpreter, PYTHONPATH, version).
  The launcher reuses a running daemon only when daemon.json records the same one;
  otherwise it stops that daemon (which exports first) and starts a new one on the
  same directory, keeping the local store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

from oci_cache import __version__
from oci_cache.secret_masking.masked_values import MASKING_KEY_FILE
from oci_cache.sizes import parse_duration, parse_size

DEFAULT_LISTEN = "127.0.0.1:0"
DEFAULT_MAX_SIZE = "10GiB"
DEFAULT_IDLE_TIMEOUT = "30m"
# With neither cache_from nor cache_to: an OCI image layout in the daemon's directory.
EMBEDDED_LAYOUT_DIR = "cache-image"


@dataclass(frozen=True)
class DaemonSettings:
    repo_root: str
    state_dir: str  # absolute, `~` already expanded
    python: str  # the interpreter that runs `python -m oci_cache.cli.main serve`
    pythonpath: Tuple[str, ...] = ()  # its PYTHONPATH: makes oci_cache (and its dependencies) importable
    cache_from: Tuple[str, ...] = ()
    cache_to: Tuple[str, ...] = ()
    listen: str = DEFAULT_LISTEN
    max_size: str = DEFAULT_MAX_SIZE
    idle_timeout: str = DEFAULT_IDLE_TIMEOUT  # "0" or "": never
    log_level: str = "info"
    # With neither cache_from nor cache_to, use the embedded default (a local OCI layout).
    embedded_default: bool = True
    # Environment variable names (or patterns) whose values mode=max exports mask,
    # beyond the secret-looking ones (`oci-cache serve --secret-env`).
    secret_env_names: Tuple[str, ...] = ()
    # The environment the daemon starts with (PYTHONPATH is replaced); None: os.environ.
    env: Optional[Mapping[str, str]] = field(default=None, compare=False, hash=False, repr=False)

    def validate(self) -> None:
        """Raises ValueError naming the bad setting."""
        if not self.python:
            raise ValueError("no Python interpreter for the daemon")
        if not os.path.isabs(self.state_dir):
            raise ValueError(f"state_dir must be an absolute path, got {self.state_dir!r}")
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"invalid listen address {self.listen!r}: want HOST:PORT, e.g. 127.0.0.1:0")
        try:
            parse_size(self.max_size)
        except ValueError as error:
            raise ValueError(f"local_store_max_size: {error}") from None
        if self.idle_timeout:
            try:
                parse_duration(self.idle_timeout)
            except ValueError as error:
                raise ValueError(f"idle_timeout: {error}") from None

    @property
    def uses_embedded_default(self) -> bool:
        return self.embedded_default and not self.cache_from and not self.cache_to


def directory_key(settings: DaemonSettings) -> str:
    """`<repo dir name>-<16 hex>`: the daemon directory's name under the state dir."""
    root = os.path.realpath(settings.repo_root)
    digest = _digest(["dir/v1", root, list(settings.cache_from), list(settings.cache_to)])
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(root.rstrip("/")) or "root")[:40]
    return f"{name}-{digest[:16]}"


def daemon_directory(settings: DaemonSettings) -> Path:
    return Path(settings.state_dir) / directory_key(settings)


def config_fingerprint(settings: DaemonSettings) -> str:
    return _digest(
        [
            "config/v1",
            __version__,
            directory_key(settings),
            list(settings.cache_from),
            list(settings.cache_to),
            settings.embedded_default,
            settings.listen,
            settings.max_size,
            settings.idle_timeout,
            settings.log_level,
            settings.python,
            list(settings.pythonpath),
            list(settings.secret_env_names),
        ]
    )[:32]


def masking_key_file(settings: DaemonSettings) -> Path:
    """The key that masks secrets: one per state dir, shared by its daemon directories
    (so masks compare across configurations)."""
    return Path(settings.state_dir) / MASKING_KEY_FILE


def effective_cache_entries(settings: DaemonSettings, directory: Path) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(cache_from, cache_to) the daemon is started with: the configured entries, or
    with neither configured, the embedded default layout in `directory`, exported in
    mode=max: it stays on this machine, and its Actions and Commands (secrets withheld,
    as in any mode=max image) let `oci-cache explain` find every miss's previous version."""
    if settings.uses_embedded_default:
        layout = Path(directory) / EMBEDDED_LAYOUT_DIR
        return (f"type=local,{_csv_field(f'src={layout}')}",), (f"type=local,{_csv_field(f'dest={layout}')},mode=max",)
    return settings.cache_from, settings.cache_to


def _csv_field(field_text: str) -> str:
    """One field of an entry, quoted the CSV way when it holds a comma or a quote."""
    if "," in field_text or '"' in field_text:
        return '"' + field_text.replace('"', '""') + '"'
    return field_text


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


__all__: List[str] = [
    "DaemonSettings",
    "config_fingerprint",
    "daemon_directory",
    "directory_key",
    "masking_key_file",
    "effective_cache_entries",
]
