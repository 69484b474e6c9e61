"""Where the nearest cached action of a miss is looked for: the local store and the
imported images, and how their Actions and Commands (or command records) are read.

    sources = ExplainSources(local_actions, imports)    # imports: an ImportSet, or None
    for action, source in sources.iter_actions(): ...   # source: "local" or the cache-from entry
    sources.command_record(command_digest)              # the record blob a mode=max image holds
                                                        # in place of a Command with a secret

`CandidateLoader` turns those digests into ActionViews (reading Action, Command or
record, and the input tree when its Directories are at hand) and keeps what it read,
so a daemon reads each candidate once, not once per run.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.explain.actions import LOCAL_SOURCE, ActionView, action_view, flatten_input_root
from oci_cache.explain.process_keys import process_key
from oci_cache.reapi import remote_execution_pb2
from oci_cache.secret_masking.command_records import CommandRecordError, parse_command_record
from oci_cache.secret_masking.masked_values import MaskingKey
from oci_cache.store.interfaces import BlobStore

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 20_000
"""Candidates read per explanation at most (the most recent images' first)."""
LOAD_BUDGET_SECONDS = 20.0
"""Reading candidates stops after this long (the ones read are kept for the next time)."""


class ExplainSources:
    def __init__(self, local_actions: Callable[[], Iterable[Digest]], imports: Optional[object] = None) -> None:
        self._local_actions = local_actions
        self._imports = imports  # cache_image.importing.imported_images.ImportSet (duck-typed: images())

    def iter_actions(self) -> Iterator[Tuple[Digest, str]]:
        seen: Set[Digest] = set()
        for digest in self._local_actions():
            seen.add(digest)
            yield digest, LOCAL_SOURCE
        for image in self._images():
            for entry in image.index.iter_actions():
                if entry.action not in seen:
                    seen.add(entry.action)
                    yield entry.action, _entry_of(image.entry_text)

    def command_record(self, command: Digest) -> Optional[Digest]:
        for image in self._images():
            find = getattr(image.index, "find_command_record", None)  # index format 1.1 (mode=max with secrets)
            found = find(command) if find is not None else None
            if found is not None:
                return found  # type: ignore[no-any-return]
        return None

    def _images(self) -> List[object]:
        if self._imports is None:
            return []
        return list(self._imports.images())  # type: ignore[attr-defined]


def _entry_of(entry_text: str) -> str:
    """The cache-from entry as the user wrote it (the importer names it "#N ENTRY" in its logs)."""
    number, _, rest = entry_text.partition(" ")
    return rest if number.startswith("#") and number[1:].isdigit() and rest else entry_text


class CandidateLoader:
    def __init__(
        self,
        blobs: BlobStore,
        sources: ExplainSources,
        key: Callable[[], MaskingKey],
        extra_secret_names: Tuple[str, ...] = (),
    ) -> None:
        self._blobs = blobs
        self._sources = sources
        self._key = key
        self._extra = extra_secret_names
        self._views: Dict[Digest, Optional[ActionView]] = {}
        self._lock = threading.Lock()

    def candidates(self, exclude: Set[Digest], budget_seconds: float = LOAD_BUDGET_SECONDS) -> List[ActionView]:
        """The views of every candidate (at most MAX_CANDIDATES) but `exclude`; those not
        read yet are read for at most `budget_seconds` (the rest on a later call)."""
        found: List[ActionView] = []
        deadline = time.monotonic() + budget_seconds
        for digest, source in self._sources.iter_actions():
            if digest in exclude:
                continue
            if len(found) >= MAX_CANDIDATES:
                break
            with self._lock:
                known = digest in self._views
                view = self._views.get(digest)
            if not known:
                if time.monotonic() > deadline:
                    continue
                view = self.read(digest, source)
                with self._lock:
                    self._views[digest] = view
            if view is not None:
                found.append(view)
        return found

    def read_cached(self, action_digest: Digest, source: str) -> Optional[ActionView]:
        """read(), remembered (an action's blobs never change; an unreadable one is tried again)."""
        with self._lock:
            view = self._views.get(action_digest)
        if view is None:
            view = self.read(action_digest, source)
            if view is not None:
                with self._lock:
                    self._views[action_digest] = view
        return view

    def read(self, action_digest: Digest, source: str) -> Optional[ActionView]:
        """The view of the action `action_digest`, or None when its Action, or both its
        Command and a record of it, cannot be read."""
        try:
            action = remote_execution_pb2.Action.FromString(self._blobs.read_bytes(action_digest))
            command_digest = Digest.from_proto(action.command_digest)
        except Exception as error:  # noqa: BLE001 - an unreadable candidate is skipped
            logger.debug("explain: action %s not readable: %s", action_digest, error)
            return None
        command = self._command(command_digest)
        if command is None:
            return None
        files = (
            flatten_input_root(Digest.from_proto(action.input_root_digest), self._directory)
            if action.HasField("input_root_digest")
            else None
        )
        return action_view(
            action,
            action_digest,
            command,
            self._key(),
            command_digest=command_digest,
            source=source,
            input_files=files,
            extra_secret_names=self._extra,
        )

    def store_directories(self, directories: Dict[Digest, bytes]) -> None:
        """Keeps Directory messages (each verified against its digest) in the blob store."""
        for digest, data in directories.items():
            if not self._blobs.contains(digest):
                self._blobs.put_bytes(digest, data)

    def process_key(self, action_digest: Digest) -> Optional[str]:
        """The process key (process_keys.py) of an action whose plain Command is at hand."""
        try:
            action = remote_execution_pb2.Action.FromString(self._blobs.read_bytes(action_digest))
            command = remote_execution_pb2.Command.FromString(
                self._blobs.read_bytes(Digest.from_proto(action.command_digest))
            )
        except Exception:  # noqa: BLE001 - no key: no description
            return None
        return process_key(
            list(command.arguments),
            [(v.name, v.value) for v in command.environment_variables],
            [*command.output_files, *(p for p in command.output_paths if p not in command.output_files)],
            command.output_directories,
        )

    def _command(self, digest: Digest) -> Optional[object]:
        try:
            return remote_execution_pb2.Command.FromString(self._blobs.read_bytes(digest))
        except CacheError:
            pass
        except Exception as error:  # noqa: BLE001 - damaged: try a record
            logger.debug("explain: command %s not readable: %s", digest, error)
        record = self._sources.command_record(digest)
        if record is None:
            return None
        try:
            return parse_command_record(self._blobs.read_bytes(record))
        except (CacheError, CommandRecordError) as error:
            logger.debug("explain: command record %s not readable: %s", record, error)
            return None

    def _directory(self, digest: Digest) -> Optional[bytes]:
        if digest.size_bytes == 0:
            return b""
        try:
            return self._blobs.read_bytes(digest)
        except CacheError:
            return None


__all__ = ["CandidateLoader", "ExplainSources", "LOAD_BUDGET_SECONDS", "MAX_CANDIDATES"]
