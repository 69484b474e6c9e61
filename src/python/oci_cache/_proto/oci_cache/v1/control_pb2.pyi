from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("address", "pid", "state_dir", "cache_from", "cache_to", "action_cache_hits", "action_cache_misses", "bytes_read", "bytes_written", "local_store_bytes", "local_store_max_bytes", "pending_export_entries", "uptime_seconds", "version", "config_fingerprint", "blobs_read", "blobs_written", "action_results_written", "idle_seconds", "idle_timeout_seconds", "export_running", "exports_completed", "control_url", "imports")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    CACHE_FROM_FIELD_NUMBER: _ClassVar[int]
    CACHE_TO_FIELD_NUMBER: _ClassVar[int]
    ACTION_CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    ACTION_CACHE_MISSES_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STORE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    PENDING_EXPORT_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_READ_FIELD_NUMBER: _ClassVar[int]
    BLOBS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    ACTION_RESULTS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_URL_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    address: str
    pid: int
    state_dir: str
    cache_from: _containers.RepeatedScalarFieldContainer[str]
    cache_to: _containers.RepeatedScalarFieldContainer[str]
    action_cache_hits: int
    action_cache_misses: int
    bytes_read: int
    bytes_written: int
    local_store_bytes: int
    local_store_max_bytes: int
    pending_export_entries: int
    uptime_seconds: float
    version: str
    config_fingerprint: str
    blobs_read: int
    blobs_written: int
    action_results_written: int
    idle_seconds: float
    idle_timeout_seconds: float
    export_running: bool
    exports_completed: int
    control_url: str
    imports: _containers.RepeatedCompositeFieldContainer[CacheFromState]
    def __init__(self, address: _Optional[str] = ..., pid: _Optional[int] = ..., state_dir: _Optional[str] = ..., cache_from: _Optional[_Iterable[str]] = ..., cache_to: _Optional[_Iterable[str]] = ..., action_cache_hits: _Optional[int] = ..., action_cache_misses: _Optional[int] = ..., bytes_read: _Optional[int] = ..., bytes_written: _Optional[int] = ..., local_store_bytes: _Optional[int] = ..., local_store_max_bytes: _Optional[int] = ..., pending_export_entries: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., version: _Optional[str] = ..., config_fingerprint: _Optional[str] = ..., blobs_read: _Optional[int] = ..., blobs_written: _Optional[int] = ..., action_results_written: _Optional[int] = ..., idle_seconds: _Optional[float] = ..., idle_timeout_seconds: _Optional[float] = ..., export_running: bool = ..., exports_completed: _Optional[int] = ..., control_url: _Optional[str] = ..., imports: _Optional[_Iterable[_Union[CacheFromState, _Mapping]]] = ...) -> None: ...

class CacheFromState(_message.Message):
    __slots__ = ("entry", "manifest_digest", "problem", "missing")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    entry: str
    manifest_digest: str
    problem: str
    missing: bool
    def __init__(self, entry: _Optional[str] = ..., manifest_digest: _Optional[str] = ..., problem: _Optional[str] = ..., missing: bool = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("background",)
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    background: bool
    def __init__(self, background: bool = ...) -> None: ...

class ExportTarget(_message.Message):
    __slots__ = ("entry", "ok", "message", "entries", "bytes_uploaded", "layers_uploaded", "layers_reused", "manifest_digest", "ignored_error")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_REUSED_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    IGNORED_ERROR_FIELD_NUMBER: _ClassVar[int]
    entry: str
    ok: bool
    message: str
    entries: int
    bytes_uploaded: int
    layers_uploaded: int
    layers_reused: int
    manifest_digest: str
    ignored_error: bool
    def __init__(self, entry: _Optional[str] = ..., ok: bool = ..., message: _Optional[str] = ..., entries: _Optional[int] = ..., bytes_uploaded: _Optional[int] = ..., layers_uploaded: _Optional[int] = ..., layers_reused: _Optional[int] = ..., manifest_digest: _Optional[str] = ..., ignored_error: bool = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("targets", "seconds", "nothing_to_export_to", "started_in_background", "ok")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOTHING_TO_EXPORT_TO_FIELD_NUMBER: _ClassVar[int]
    STARTED_IN_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[ExportTarget]
    seconds: float
    nothing_to_export_to: bool
    started_in_background: bool
    ok: bool
    def __init__(self, targets: _Optional[_Iterable[_Union[ExportTarget, _Mapping]]] = ..., seconds: _Optional[float] = ..., nothing_to_export_to: bool = ..., started_in_background: bool = ..., ok: bool = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("skip_export",)
    SKIP_EXPORT_FIELD_NUMBER: _ClassVar[int]
    skip_export: bool
    def __init__(self, skip_export: bool = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
