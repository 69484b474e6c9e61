"""mode=max without secrets: Commands that hold a secret are exported as records.

    withholding = SecretCommandWithholding(key_file, extra_names=("DATABASE_URL",))
    withholding.add_local_blobs(plan, collected, store, entry)   # in place of "add every local blob"

A mode=max export adds every blob of the local store, and the Command protos a REAPI
client uploads carry the values of the process's environment. Each local blob the
image at the ref does not hold yet (the blobs the export would pack, and so read,
anyway) is looked at: if it parses as a REAPI
Command and holds something secret_masking would mask (a secret-looking variable's
value, a credential-looking argument), the Command is left out and its record — the
Command with those values masked (secret_masking.command_records) — is added in its
place, and the plan remembers which Command the record stands for (the index's
command record columns). A Command already replaced in the image at the ref is not
read again: its record's last_used is raised instead. Clean Commands and every other
blob are added as before.

Only blobs a hit does not need are ever replaced: a blob an exported action's result
references (an output, stdout/stderr) is added by the action, as it is. Hits and
completeness never need a Command, so an Action whose Command is left out is still
exported and still served (its command_digest names a blob the image does not hold).

The masking key (secret_masking.masked_values) is read, or created, on first need;
when that fails, a key made up for this process is used (masks then compare within
this daemon only) and a warning says so — never a Command in clear.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Iterable, Optional, Tuple

from google.protobuf.message import DecodeError

from oci_cache.cache_entries import CacheTo
from oci_cache.cache_image.export_collection import Collected
from oci_cache.cache_image.image_plan import ImagePlan
from oci_cache.digests import Digest
from oci_cache.errors import CacheError
from oci_cache.image_format.entry_index import BlobEntry, EntryIndex
from oci_cache.reapi import remote_execution_pb2
from oci_cache.secret_masking import (
    MASKING_KEY_FILE,
    MaskingKey,
    command_holds_secrets,
    load_or_create_masking_key,
    record_command,
)

logger = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 << 20
"""Blobs larger than this are not read as Commands (REAPI clients send Commands of KiB)."""
_COMMAND_FIRST_BYTE = 0x0A
"""Field 1 (arguments, required by REAPI), length-delimited: how every serialized Command starts."""

Replacement = Optional[Tuple[Digest, bytes]]
"""(record digest, record bytes) for a Command holding a secret; None: export the blob as it is."""


class SecretCommandWithholding:
    """The masking settings of an exporter: its key file (the key is loaded once) and the
    names to mask beyond the secret-looking ones. Thread-safe; keeps nothing per blob."""

    def __init__(self, key_file: Optional[Path], extra_names: Iterable[str] = ()) -> None:
        """`key_file`: where the masking key lives (None: a key for this process only)."""
        self.key_file = Path(key_file) if key_file is not None else None
        self.extra_names: Tuple[str, ...] = tuple(extra_names)
        self._key: Optional[MaskingKey] = None
        self._lock = threading.Lock()

    def add_local_blobs(self, plan: ImagePlan, collected: Collected, store: object, entry: CacheTo) -> None:
        """Adds `collected.blob_times` (mode=max: every local blob) to `plan`, Commands
        holding a secret replaced by their records (bytes put in `collected.results`)."""
        names = tuple(dict.fromkeys(self.extra_names + tuple(entry.secret_env)))
        for digest, used_at in collected.blob_times.items():
            known_record = plan.command_records.get(digest)
            if known_record is not None and plan.touch_blob(known_record, used_at, False):
                continue
            if plan.touch_blob(digest, used_at, False):
                continue
            replacement = self._replacement(digest, store, names)
            if replacement is None:
                plan.add_pending(digest, used_at, False)
                continue
            record, data = replacement
            collected.results[record] = data
            plan.command_records[digest] = record
            if not plan.touch_blob(record, used_at, False):
                plan.add_pending(record, used_at, False)

    def key(self) -> MaskingKey:
        with self._lock:
            if self._key is None:
                self._key = self._load_key()
            return self._key

    def _load_key(self) -> MaskingKey:
        if self.key_file is None:
            return MaskingKey.random(ephemeral=True)
        try:
            return load_or_create_masking_key(self.key_file)
        except (OSError, ValueError) as error:
            logger.warning(
                "cannot use the secret masking key %s (%s); masking with a key for this process only, so masked "
                "values will not compare with other runs",
                self.key_file,
                error,
            )
            return MaskingKey.random(ephemeral=True)

    def _replacement(self, digest: Digest, store: object, names: Tuple[str, ...]) -> Replacement:
        command = _read_command(store, digest)
        if command is None or not command_holds_secrets(command, names):
            return None
        data = record_command(command, digest, self.key(), names).to_bytes()
        return Digest.of(data), data


SECRET_SETTINGS_FILE = "secret-masking.json"
"""In a daemon's export directory: `{"maskingKeyFile": PATH, "secretEnvNames": [...]}`, the
key file and the names it masks beyond the secret-looking ones (never values), so that
`oci-cache export --state-dir DIR --cache-to …` of that directory masks the same way."""


def remember_secret_settings(export_dir: Path, withholding: "SecretCommandWithholding") -> None:
    """Records the settings of `withholding` for later direct exports (best effort)."""
    document = {
        "maskingKeyFile": str(withholding.key_file) if withholding.key_file is not None else None,
        "secretEnvNames": list(withholding.extra_names),
    }
    try:
        Path(export_dir).mkdir(parents=True, exist_ok=True)
        temp = Path(export_dir) / f".{SECRET_SETTINGS_FILE}.tmp"
        temp.write_text(json.dumps(document, sort_keys=True) + "\n", encoding="utf-8")
        temp.replace(Path(export_dir) / SECRET_SETTINGS_FILE)
    except OSError as error:
        logger.warning("cannot record the secret masking settings in %s: %s", export_dir, error)


def remembered_withholding(state_dir: Path, export_dir: Path) -> "SecretCommandWithholding":
    """The withholding a daemon of `state_dir` recorded, or the state dir's defaults."""
    try:
        document = json.loads((Path(export_dir) / SECRET_SETTINGS_FILE).read_text(encoding="utf-8"))
        key_file = document.get("maskingKeyFile")
        names = tuple(str(name) for name in document.get("secretEnvNames") or ())
    except (OSError, ValueError, AttributeError):
        return SecretCommandWithholding(default_masking_key_file(state_dir))
    return SecretCommandWithholding(Path(key_file) if key_file else default_masking_key_file(state_dir), names)


def default_masking_key_file(state_dir: Path) -> Path:
    """The masking key of a state directory: STATE_DIR/secret-masking.key, or the one of
    the directory above when only that exists (a daemon directory the Pants plugin made
    under its state_dir shares the state_dir's key)."""
    own = Path(state_dir) / MASKING_KEY_FILE
    parent = Path(state_dir).parent / MASKING_KEY_FILE
    if not own.exists() and parent.exists():
        return parent
    return own


def find_blob_or_record(index: EntryIndex, digest: Digest) -> Optional[BlobEntry]:
    """The entry of `digest` in `index`, or, for a Command left out, of its record."""
    found = index.find_blob(digest)
    if found is not None:
        return found
    record = index.find_command_record(digest)
    return index.find_blob(record) if record is not None else None


def _read_command(store: object, digest: Digest) -> Optional[remote_execution_pb2.Command]:
    """The blob as a Command, or None when it cannot be one (or cannot be read)."""
    if not 0 < digest.size_bytes <= MAX_COMMAND_BYTES:
        return None
    try:
        with store.open_blob(digest) as reader:  # type: ignore[attr-defined]
            first = reader.read(1)
            if not first or first[0] != _COMMAND_FIRST_BYTE:
                return None
            data = first + reader.read()
    except (CacheError, OSError):
        return None
    try:
        return remote_execution_pb2.Command.FromString(data)
    except (DecodeError, ValueError):
        return None


__all__ = [
    "SECRET_SETTINGS_FILE",
    "remember_secret_settings",
    "remembered_withholding",
    "MAX_COMMAND_BYTES", "SecretCommandWithholding", "default_masking_key_file", "find_blob_or_record"]
