"""A standard-library client of the daemon's JSON control endpoint (server/control_http.py).

    client = ControlClient("http://127.0.0.1:PORT", token)
    status = client.status(timeout=1.0)      # DaemonStatus
    result = client.export()                 # ExportResult; blocks until the export is done
    client.shutdown()

Used by the Pants plugin, which runs where grpcio is usually missing; a call is one
HTTP/1.1 request on loopback (about a millisecond).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from oci_cache.export_report import ExportTargetReport as ExportTargetResult

DEFAULT_TIMEOUT_SECONDS = 2.0


class ControlError(Exception):
    """The daemon could not be reached, refused the call or answered nonsense."""


@dataclass(frozen=True)
class CacheFromState:
    """A cache-from entry's import, as the daemon reports it."""

    entry: str
    manifest_digest: str = ""
    problem: str = ""
    missing: bool = False

    @property
    def failed(self) -> bool:
        """An import problem other than "no image at the ref yet"."""
        return bool(self.problem) and not self.missing


@dataclass(frozen=True)
class DaemonStatus:
    address: str
    pid: int
    state_dir: str
    version: str
    config_fingerprint: str = ""
    control_url: str = ""
    cache_from: Tuple[str, ...] = ()
    cache_to: Tuple[str, ...] = ()
    action_cache_hits: int = 0
    action_cache_misses: int = 0
    action_results_written: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    blobs_written: int = 0
    bytes_written: int = 0
    local_store_bytes: int = 0
    local_store_max_bytes: int = 0
    pending_export_entries: Optional[int] = None
    uptime_seconds: float = 0.0
    idle_seconds: float = 0.0
    idle_timeout_seconds: float = 0.0
    export_running: bool = False
    exports_completed: int = 0
    imports: Tuple[CacheFromState, ...] = ()

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "DaemonStatus":
        pending = data.get("pending_export_entries")
        return cls(
            address=str(data.get("address", "")),
            pid=int(data.get("pid", 0)),
            state_dir=str(data.get("state_dir", "")),
            version=str(data.get("version", "")),
            config_fingerprint=str(data.get("config_fingerprint", "")),
            control_url=str(data.get("control_url", "")),
            cache_from=tuple(str(entry) for entry in data.get("cache_from", ())),
            cache_to=tuple(str(entry) for entry in data.get("cache_to", ())),
            action_cache_hits=int(data.get("action_cache_hits", 0)),
            action_cache_misses=int(data.get("action_cache_misses", 0)),
            action_results_written=int(data.get("action_results_written", 0)),
            blobs_read=int(data.get("blobs_read", 0)),
            bytes_read=int(data.get("bytes_read", 0)),
            blobs_written=int(data.get("blobs_written", 0)),
            bytes_written=int(data.get("bytes_written", 0)),
            local_store_bytes=int(data.get("local_store_bytes", 0)),
            local_store_max_bytes=int(data.get("local_store_max_bytes", 0)),
            pending_export_entries=None if pending is None else int(pending),
            uptime_seconds=float(data.get("uptime_seconds", 0.0)),
            idle_seconds=float(data.get("idle_seconds", 0.0)),
            idle_timeout_seconds=float(data.get("idle_timeout_seconds", 0.0)),
            export_running=bool(data.get("export_running", False)),
            exports_completed=int(data.get("exports_completed", 0)),
            imports=tuple(
                CacheFromState(
                    entry=str(item.get("entry", "")),
                    manifest_digest=str(item.get("manifest_digest", "")),
                    problem=str(item.get("problem", "")),
                    missing=bool(item.get("missing", False)),
                )
                for item in data.get("imports", ())
                if isinstance(item, dict)
            ),
        )


@dataclass(frozen=True)
class ExportResult:
    targets: Tuple[ExportTargetResult, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    nothing_to_export_to: bool = False
    started_in_background: bool = False
    ok: bool = True

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ExportResult":
        return cls(
            targets=tuple(
                ExportTargetResult(
                    entry=str(target.get("entry", "")),
                    ok=bool(target.get("ok", False)),
                    message=str(target.get("message", "")),
                    entries=int(target.get("entries", 0)),
                    bytes_uploaded=int(target.get("bytes_uploaded", 0)),
                    layers_uploaded=int(target.get("layers_uploaded", 0)),
                    layers_reused=int(target.get("layers_reused", 0)),
                    manifest_digest=str(target.get("manifest_digest", "")),
                    ignored_error=bool(target.get("ignored_error", False)),
                )
                for target in data.get("targets", ())
            ),
            seconds=float(data.get("seconds", 0.0)),
            nothing_to_export_to=bool(data.get("nothing_to_export_to", False)),
            started_in_background=bool(data.get("started_in_background", False)),
            ok=bool(data.get("ok", False)),
        )


class ControlClient:
    def __init__(self, control_url: str, token: Optional[str]) -> None:
        parsed = urllib.parse.urlsplit(control_url)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ControlError(f"not a control URL: {control_url!r}")
        self.control_url = control_url
        self._host = parsed.hostname
        self._port = parsed.port
        self._token = token

    def status(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> DaemonStatus:
        return DaemonStatus.from_json(self._call("GET", "/v1/status", None, timeout))

    def export(self, background: bool = False, timeout: Optional[float] = None) -> ExportResult:
        """Blocks until the export ends (timeout None: however long it takes)."""
        return ExportResult.from_json(self._call("POST", "/v1/export", {"background": background}, timeout))

    def shutdown(self, skip_export: bool = False, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._call("POST", "/v1/shutdown", {"skip_export": skip_export}, timeout)

    # explain/control_routes.py: the record of this run's misses.
    def explain(self, timeout: Optional[float] = 30.0) -> Dict[str, Any]:
        """The explain/v1 report of the current (or last finished) run."""
        return self._call("GET", "/v1/explain", None, timeout)

    def send_descriptions(
        self,
        descriptions: Optional[Dict[str, str]] = None,
        processes: Optional[Dict[str, str]] = None,
        timeout: float = 10.0,
    ) -> int:
        """Attaches Pants' process descriptions to the run's misses, by action digest
        ("HASH/SIZE" -> text) or by process key (explain/process_keys.py); how many matched."""
        body = {"descriptions": descriptions or {}, "processes": processes or {}}
        return int(self._call("POST", "/v1/explain/descriptions", body, timeout).get("matched", 0))

    def send_input_tree(
        self, root: str, files: List[Tuple[str, str, bool]], directories: List[str], timeout: float = 10.0
    ) -> bool:
        """An input root's listing (path, "HASH/SIZE", executable), for the daemon to rebuild
        its Directory messages (explain/input_trees.py); whether it kept them."""
        body = {"root": root, "files": [list(f) for f in files], "directories": directories}
        return bool(self._call("POST", "/v1/explain/input-trees", body, timeout).get("kept", False))

    def finish_explain(self, timeout: Optional[float] = 30.0) -> str:
        """Ends the daemon's record of this run (saved for `oci-cache explain`); the misses' summary clause."""
        return str(self._call("POST", "/v1/explain/finish", None, timeout).get("summary", ""))

    def _call(self, method: str, path: str, body: Optional[Dict[str, Any]], timeout: Optional[float]) -> Dict[str, Any]:
        payload = json.dumps(body).encode("utf-8") if body is not None else b""
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload))}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException, socket.timeout) as error:
            raise ControlError(f"cannot reach the daemon at {self.control_url}: {error or type(error).__name__}") from None
        finally:
            connection.close()
        try:
            document = json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            raise ControlError(f"the daemon at {self.control_url} answered {response.status} with non-JSON") from None
        if response.status != 200:
            reason = document.get("error") if isinstance(document, dict) else None
            raise ControlError(f"the daemon at {self.control_url} answered {response.status}: {reason or data[:200]!r}")
        if not isinstance(document, dict):
            raise ControlError(f"the daemon at {self.control_url} answered an unexpected document")
        return document


__all__: List[str] = [
    "CacheFromState",
    "ControlClient",
    "ControlError",
    "DaemonStatus",
    "ExportResult",
    "ExportTargetResult",
]
