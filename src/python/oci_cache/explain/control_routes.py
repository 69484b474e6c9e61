"""The explain endpoints of the daemon's JSON control server (server/control_http.py):

    GET  /v1/explain                                   -> the explain/v1 report (each miss with its "cause")
    POST /v1/explain/descriptions {"descriptions": {"HASH/SIZE": "Run Pytest - …"}}  -> {"matched": N}
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
        given = document.get("descriptions") if isinstance(document, dict) else None
        if not isinstance(given, dict):
            raise ValueError('want {"descriptions": {"HASH/SIZE": "description", …}}')
        return {"matched": recorder.describe({str(k): str(v) for k, v in given.items()})}

    def finish(body: bytes) -> Dict[str, Any]:
        summary = recorder.finish_run()
        return {"summary": summary}

    return {("GET", EXPLAIN_PATH): explain, ("POST", DESCRIPTIONS_PATH): descriptions, ("POST", FINISH_PATH): finish}


__all__ = ["DESCRIPTIONS_PATH", "EXPLAIN_PATH", "FINISH_PATH", "explain_routes"]
