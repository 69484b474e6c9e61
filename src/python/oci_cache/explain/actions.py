"""What an explanation knows of one action.

    view = action_view(action, action_digest, command, key, source="local")

An `ActionView` holds the action's Command as a masked record
(secret_masking.command_records): a plain Command is turned into a record with the
local masking key, a record read from a mode=max image is used as it is. So nothing
an explanation holds or prints carries a secret in clear, and two actions compare
value by value through their masks (when both were masked with the same key).

`input_files` is the flattened input tree (path -> "HASH/SIZE") when every Directory
of the input root was at hand, else None (then only the root digests compare).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2
from oci_cache.secret_masking.command_records import CommandRecord, record_command
from oci_cache.secret_masking.masked_values import MaskingKey

LOCAL_SOURCE = "local"
MAX_INPUT_FILES = 100_000
"""Input trees with more entries than this are not flattened (only root digests compare)."""


@dataclass(frozen=True)
class ActionView:
    action: Digest
    command: CommandRecord
    input_root: Optional[Digest]
    platform: Tuple[Tuple[str, str], ...]
    """The Action's platform properties, then the Command's (REAPI v2.2 moved them)."""
    timeout: Optional[str]
    """The Action's timeout as text ("60s", "1.5s"), None when unset."""
    source: str = LOCAL_SOURCE
    """Where it was found: "local" or a cache-from entry's text."""
    input_files: Optional[Mapping[str, str]] = None

    @property
    def output_key(self) -> Tuple[str, ...]:
        """Every output path the Command declares (paths, files, directories), sorted."""
        record = self.command
        return tuple(sorted({*record.output_paths, *record.output_files, *record.output_directories}))


def action_view(
    action: remote_execution_pb2.Action,
    action_digest: Digest,
    command: Union[remote_execution_pb2.Command, CommandRecord],
    key: MaskingKey,
    *,
    command_digest: Optional[Digest] = None,
    source: str = LOCAL_SOURCE,
    input_files: Optional[Mapping[str, str]] = None,
    extra_secret_names: Iterable[str] = (),
) -> ActionView:
    """The view of `action` (whose blob has `action_digest`) and its Command (a plain
    Command is masked with `key`; a record is kept as it is)."""
    if isinstance(command, CommandRecord):
        record = command
    else:
        digest = command_digest or (
            Digest.from_proto(action.command_digest) if action.HasField("command_digest") else Digest.of(b"")
        )
        record = record_command(command, digest, key, extra_secret_names)
    platform = tuple((p.name, p.value) for p in action.platform.properties) + tuple(record.platform)
    return ActionView(
        action=action_digest,
        command=record,
        input_root=Digest.from_proto(action.input_root_digest) if action.HasField("input_root_digest") else None,
        platform=platform,
        timeout=_duration_text(action.timeout) if action.HasField("timeout") else None,
        source=source,
        input_files=input_files,
    )


def flatten_input_root(
    root: Digest, read_directory: Callable[[Digest], Optional[bytes]], max_files: int = MAX_INPUT_FILES
) -> Optional[Dict[str, str]]:
    """path -> "HASH/SIZE" of every file and symlink ("-> TARGET") under `root`, or None
    when a Directory is missing or unreadable, or the tree is larger than `max_files`."""
    files: Dict[str, str] = {}
    pending = [("", root)]
    seen: Dict[Digest, bytes] = {}
    while pending:
        prefix, digest = pending.pop()
        data = seen.get(digest)
        if data is None:
            data = read_directory(digest)
            if data is None:
                return None
            seen[digest] = data
        try:
            directory = remote_execution_pb2.Directory.FromString(data)
        except Exception:  # noqa: BLE001 - a damaged Directory: the tree is unknown
            return None
        for file_node in directory.files:
            files[prefix + file_node.name] = f"{file_node.digest.hash}/{file_node.digest.size_bytes}"
        for link in directory.symlinks:
            files[prefix + link.name] = f"-> {link.target}"
        for sub in directory.directories:
            pending.append((prefix + sub.name + "/", Digest(sub.digest.hash, sub.digest.size_bytes)))
        if len(files) > max_files:
            return None
    return files


def _duration_text(duration: object) -> str:
    seconds = getattr(duration, "seconds", 0) + getattr(duration, "nanos", 0) / 1e9
    return f"{seconds:g}s"


__all__ = ["ActionView", "LOCAL_SOURCE", "action_view", "flatten_input_root"]
