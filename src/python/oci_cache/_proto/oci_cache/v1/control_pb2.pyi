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
    __slots__ = ("address", "pid", "state_dir", "cache_from", "cache_to", "action_cache_hits", "action_cache_misses", "bytes_read", "bytes_written", "local_store_bytes", "local_store_max_bytes", "pending_export_entries", "uptime_seconds", "version")
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
    def __init__(self, address: _Optional[str] = ..., pid: _Optional[int] = ..., state_dir: _Optional[str] = ..., cache_from: _Optional[_Iterable[str]] = ..., cache_to: _Optional[_Iterable[str]] = ..., action_cache_hits: _Optional[int] = ..., action_cache_misses: _Optional[int] = ..., bytes_read: _Optional[int] = ..., bytes_written: _Optional[int] = ..., local_store_bytes: _Optional[int] = ..., local_store_max_bytes: _Optional[int] = ..., pending_export_entries: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., version: _Optional[str] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportTarget(_message.Message):
    __slots__ = ("entry", "ok", "message", "entries", "bytes_uploaded", "layers_uploaded", "layers_reused", "manifest_digest")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_UPLOADED_FIELD_NUMBER: _ClassVar[int]
    LAYERS_REUSED_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    entry: str
    ok: bool
    message: str
    entries: int
    bytes_uploaded: int
    layers_uploaded: int
    layers_reused: int
    manifest_digest: str
    def __init__(self, entry: _Optional[str] = ..., ok: bool = ..., message: _Optional[str] = ..., entries: _Optional[int] = ..., bytes_uploaded: _Optional[int] = ..., layers_uploaded: _Optional[int] = ..., layers_reused: _Optional[int] = ..., manifest_digest: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("targets", "seconds")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[ExportTarget]
    seconds: float
    def __init__(self, targets: _Optional[_Iterable[_Union[ExportTarget, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
