"""Pants' descriptions of the run's processes, sent to the daemon, and the misses' causes
for the end-of-run line (Pants-independent; end_of_run.py feeds it workunits).

    descriptions = ProcessDescriptions()
    descriptions.add(completed_workunits)          # on every callback of the run
    clause = misses_clause(client, descriptions)   # '2 misses: 1 arguments changed, 1 env changed (API_TOKEN)'

A process workunit of Pants 2.17 carries `metadata["definition"]`, the JSON of the
Process (argv, env, outputs, description), but not its action digest: each is sent
as its process key (oci_cache.explain.process_keys: a digest, no value in clear), which
the daemon computes from the uploaded Command too. Only processes that ran here
(`metadata["source"]` "Ran": the cache missed) are kept, at most MAX_PROCESSES a run.
"""

from __future__ import annotations

import logging
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

from oci_cache.daemon.control_client import ControlClient, ControlError
from oci_cache.explain.process_keys import process_key_of_definition

logger = logging.getLogger(__name__)

MAX_PROCESSES = 20_000


class ProcessDescriptions:
    def __init__(self) -> None:
        self.by_process_key: Dict[str, str] = {}
        self.input_roots: Dict[str, Tuple[str, int]] = {}
        """Process key -> its input root (fingerprint, size), from the definition."""

    def add(self, workunits: Iterable[Any]) -> None:
        for workunit in workunits or ():
            if len(self.by_process_key) >= MAX_PROCESSES:
                return
            try:
                metadata = workunit.get("metadata") or {}
                definition = metadata.get("definition")
                if not isinstance(definition, str) or metadata.get("source", "Ran") != "Ran":
                    continue
                key = process_key_of_definition(definition)
                description = workunit.get("description") or ""
            except AttributeError:
                continue
            if key is not None and description:
                self.by_process_key.setdefault(key, str(description))
                root = _input_root(definition)
                if root is not None:
                    self.input_roots.setdefault(key, root)


def _input_root(definition: str) -> Optional[Tuple[str, int]]:
    try:
        digest = json.loads(definition)["input_digests"]["complete"]["digest"]
        return str(digest["fingerprint"]), int(digest["size_bytes"])
    except (ValueError, KeyError, TypeError):
        return None


def misses_clause(client: ControlClient, descriptions: ProcessDescriptions) -> Optional[str]:
    """Sends the descriptions, ends the daemon's record of this run and returns the
    misses' causes in one clause; None when the daemon does not explain (an older one)
    or did not answer (logged at debug: the summary line goes on without it)."""
    try:
        if descriptions.by_process_key:
            client.send_descriptions(processes=descriptions.by_process_key)
        return client.finish_explain(timeout=10.0) or None
    except ControlError as error:
        logger.debug("oci-cache: no explanation of the misses: %s", error)
        return None


__all__: List[str] = ["MAX_PROCESSES", "ProcessDescriptions", "misses_clause"]
