"""The explain endpoints of the daemon's JSON control server (server/control_http.py):

    GET  /v1/explain                                   -> the explain/v1 report (each miss with its "cause")
    POST /v1/explain/descriptions {"descriptions": {"HASH/SIZE": "Run Pytest - …"},
                                   "processes": {"pk1:…": "Run Pytest - …"}}     -> {"matched": N}
         (by action digest, or by process key: explain/process_keys.py)
    POST /v1/explain/finish                            -> {"summary": "12 misses: …", "misses": N}

Same bearer token as every other control call.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from oci_cache.explain.recorder import MissRecorder
from oci_cache.server.control_http import JsonRoutes

EXPLAIN_PATH = "/v1/explain"
DESCRIPTIONS_PATH = "/v1/explain/descriptions"
FINISH_PATH = "/v1/explain/finish"


def explain_routes(recorder: MissRecorder) -> JsonRoutes:
    def explain(body: bytes) -> Dict[str, Any]:
        return recorder.report().to_json(include_cause=True)

    def descriptions(body: bytes) -> Dict[str, Any]:
        document = json.loads(body.decode("utf-8") or "{}")
        if not isinstance(document, dict):
            raise ValueError('want {"descriptions": {"HASH/SIZE": "…"}, "processes": {"pk1:…": "…"}}')
        by_digest = document.get("descriptions") or {}
        by_process = document.get("processes") or {}
        if not isinstance(by_digest, dict) or not isinstance(by_process, dict):
            raise ValueError('want {"descriptions": {"HASH/SIZE": "…"}, "processes": {"pk1:…": "…"}}')
        matched = recorder.describe({str(k): str(v) for k, v in by_digest.items()})
        matched += recorder.describe_processes({str(k): str(v) for k, v in by_process.items()})
        return {"matched": matched}

    def finish(body: bytes) -> Dict[str, Any]:
        summary = recorder.finish_run()
        return {"summary": summary}

    return {("GET", EXPLAIN_PATH): explain, ("POST", DESCRIPTIONS_PATH): descriptions, ("POST", FINISH_PATH): finish}


__all__ = ["DESCRIPTIONS_PATH", "EXPLAIN_PATH", "FINISH_PATH", "explain_routes"]
