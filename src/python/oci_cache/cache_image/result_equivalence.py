"""When a result written back is not new: it differs from the image's only in execution_metadata.

Pants looks an action up in the remote cache and runs it locally at the same time; when
the local run finishes first, Pants writes its own result back. That result has the same
exit code and the same outputs as the image's (a deterministic action), but a different
`execution_metadata` (worker, timestamps), so its bytes and digest differ. Exporting it
would make the entry "new" and publish a layer that holds nothing new at the end of an
otherwise fully cached run. `same_but_execution_metadata` says when two serialized
ActionResults are equal once execution_metadata is set aside; the exporter then keeps
the image's result (export: `_merge`).
"""

from __future__ import annotations

from typing import Optional

from google.protobuf.message import DecodeError

from oci_cache.reapi import remote_execution_pb2


def _without_execution_metadata(serialized: bytes) -> Optional[bytes]:
    result = remote_execution_pb2.ActionResult()
    try:
        result.ParseFromString(serialized)
    except DecodeError:
        return None
    result.ClearField("execution_metadata")
    return result.SerializeToString(deterministic=True)


def same_but_execution_metadata(first: bytes, second: bytes) -> bool:
    """True when the two serialized ActionResults are equal but for execution_metadata
    (False when either does not parse)."""
    if first == second:
        return True
    a, b = _without_execution_metadata(first), _without_execution_metadata(second)
    return a is not None and a == b


__all__ = ["same_but_execution_metadata"]
