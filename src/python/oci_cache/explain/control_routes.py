"""The explain endpoints of the daemon's JSON control server (server/control_http.py):

    GET  /v1/explain                                   -> the explain/v1 report (each miss with its "cause")
    POST /v1/explain/descriptions {"descriptions": {"HASH/SIZE": "Run Pytest - …"},
                                   "processes": {"pk1:…": "Run Pytest - …"}}     -> {"matched": N}
         (by action digest, or by process key: explain/process_keys.py)
    POST /v1/explain/input-trees {"root": "HASH/SIZE", "files": [[PATH, "HASH/SIZE", EXECUTABLE], …],
                                  "directories": [EMPTY DIRECTORY PATH, …]}  -> {"kept": BOOL}
         (an input root's listing: its Directory messages are rebuilt and kept, input_trees.py)
    POST /v1/explain/finish                            -> {"summary": "12 misses: …", "misses": N}

Same bearer token as every other control call.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from oci_cache.digests import Digest
from oci_cache.errors import InvalidArgumentError
from oci_cache.explain.recorder import MissRecorder
from oci_cache.server.control_http import JsonRoutes

EXPLAIN_PATH = "/v1/explain"
DESCRIPTIONS_PATH = "/v1/explain/descriptions"
FINISH_PATH = "/v1/explain/finish"
INPUT_TREES_PATH = "/v1/explain/input-trees"


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

    def input_tree(body: bytes) -> Dict[str, Any]:
        document = json.loads(body.decode("utf-8") or "{}")
        if not isinstance(document, dict):
            raise ValueError('want {"root": "HASH/SIZE", "files": [[PATH, "HASH/SIZE", EXECUTABLE], …]}')
        hash_hex, _, size = str(document.get("root", "")).partition("/")
        files = [(str(p), str(d), bool(x)) for p, d, x in document.get("files") or ()]
        empty = [str(p) for p in document.get("directories") or ()]
        try:
            return {"kept": recorder.add_input_tree(Digest.parse(hash_hex, int(size)), files, empty)}
        except InvalidArgumentError as error:
            raise ValueError(str(error)) from None

    def finish(body: bytes) -> Dict[str, Any]:
        summary = recorder.finish_run()
        return {"summary": summary}

    return {("GET", EXPLAIN_PATH): explain, ("POST", DESCRIPTIONS_PATH): descriptions, ("POST", FINISH_PATH): finish,
            ("POST", INPUT_TREES_PATH): input_tree}


__all__ = ["DESCRIPTIONS_PATH", "EXPLAIN_PATH", "FINISH_PATH", "explain_routes"]
