"""The end of a Pants run: export (per `[oci-cache] export_on_finish`) and one summary line.

A `WorkunitsCallbackFactoryRequest` union member: Pants creates its callback at the
start of every run and calls it with `finished=True` once the run's work, the
uploads to the cache included, is done. The callback talks to the daemon over its
JSON control endpoint (standard library only, about a millisecond a call):

- `wait`: asks for an export and waits for it, at most `export_wait_limit` (on a
  terminal, a progress line every few seconds while it waits);
- `background`: asks for an export and returns at once (the daemon finishes it);
- `off`: no export.

Then it prints `oci-cache: H hits, M misses, R read, W written; <export>`, and, when the
run missed, the misses' causes in one clause (miss_causes.py: Pants' descriptions of the
processes go to the daemon, which explains each miss; `oci-cache explain` shows them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional

from pants.engine.rules import collect_rules, rule
from pants.engine.streaming_workunit_handler import (
    WorkunitsCallback,
    WorkunitsCallbackFactory,
    WorkunitsCallbackFactoryRequest,
)
from pants.engine.unions import UnionRule
from pants.option.global_options import GlobalOptions

from pants_oci_cache import run_state
from pants_oci_cache.finish import DEFAULT_WAIT_LIMIT_SECONDS, finish_run, wait_limit_seconds
from pants_oci_cache.input_tree_listing import send_input_trees
from pants_oci_cache.miss_causes import ProcessDescriptions, misses_clause
from pants_oci_cache.subsystem import ExportOnFinish, OciCacheSubsystem

logger = logging.getLogger(__name__)


class OciCacheCallbackFactoryRequest:
    pass


@dataclass(frozen=True)
class EndOfRunSettings:
    export_on_finish: ExportOnFinish
    remote_cache_on: bool
    export_wait_limit: Optional[float] = DEFAULT_WAIT_LIMIT_SECONDS
    """Seconds; None: no limit."""
    send_input_trees: bool = False


@rule
async def oci_cache_callback_factory(
    _: OciCacheCallbackFactoryRequest, subsystem: OciCacheSubsystem, global_options: GlobalOptions
) -> WorkunitsCallbackFactory:
    settings = EndOfRunSettings(
        export_on_finish=subsystem.export_on_finish,
        remote_cache_on=bool(global_options.remote_cache_read or global_options.remote_cache_write),
        export_wait_limit=wait_limit_seconds(subsystem.export_wait_limit),
        send_input_trees=input_trees_on(str(subsystem.explain_input_trees), subsystem.cache_to),
    )
    return WorkunitsCallbackFactory(callback_factory=lambda: callback_for_this_run(settings))


def callback_for_this_run(settings: EndOfRunSettings) -> Optional[WorkunitsCallback]:
    start = run_state.take()
    if not settings.remote_cache_on:
        logger.warning(
            "[oci-cache] `remote_cache_read` and `remote_cache_write` are both false in [GLOBAL], so Pants "
            "does not use the cache: set them to true (`pants help oci-cache`)."
        )
        return None
    if start is None:  # remote_auth said UNAVAILABLE (and warned)
        return None
    return EndOfRunCallback(start, settings.export_on_finish, settings.export_wait_limit, settings.send_input_trees)


def input_trees_on(setting: str, cache_to: Iterable[str]) -> bool:
    """`[oci-cache] explain_input_trees`: on, off, or auto (on when a cache_to entry is mode=max)."""
    if setting == "auto":
        return any("mode=max" in str(entry).replace(" ", "") for entry in cache_to)
    if setting not in ("on", "off"):
        logger.warning("[oci-cache] explain_input_trees must be on, off or auto, not %r; using auto", setting)
        return input_trees_on("auto", cache_to)
    return setting == "on"


class EndOfRunCallback(WorkunitsCallback):
    def __init__(
        self,
        start: run_state.RunStart,
        export_on_finish: ExportOnFinish,
        export_wait_limit: Optional[float] = DEFAULT_WAIT_LIMIT_SECONDS,
        send_input_trees: bool = False,
    ) -> None:
        self._start = start
        self._send_input_trees = send_input_trees
        self._export_on_finish = export_on_finish
        self._export_wait_limit = export_wait_limit
        self._descriptions = ProcessDescriptions()
        self._describing_seconds = 0.0
        """Time this callback spent on Pants' descriptions of the run's processes."""

    @property
    def can_finish_async(self) -> bool:
        return False  # it prints the summary, which must reach the console

    def __call__(
        self,
        *,
        started_workunits: Any,
        completed_workunits: Any,
        finished: bool,
        context: Any,
    ) -> None:
        began = time.monotonic()
        self._descriptions.add(completed_workunits)
        self._describing_seconds += time.monotonic() - began
        if not finished:
            return
        try:
            tree_seconds = 0.0
            if self._send_input_trees and self._descriptions.input_roots:
                listed, kept, tree_seconds = send_input_trees(
                    self._start.handle.client(), context, self._descriptions.input_roots.values()
                )
                logger.debug("oci-cache: %d input trees listed (%d kept) in %.2fs", listed, kept, tree_seconds)
            began = time.monotonic()
            causes = misses_clause(self._start.handle.client(), self._descriptions)
            causes_seconds = time.monotonic() - began
            # What explaining the misses cost this run (bench/pants_bench.sh reads this line).
            logger.debug(
                "oci-cache: recording for `oci-cache explain` took %.4fs (descriptions %.4fs, input trees %.4fs, "
                "descriptions sent and the misses' causes %.4fs; %d processes ran here)",
                self._describing_seconds + tree_seconds + causes_seconds,
                self._describing_seconds,
                tree_seconds,
                causes_seconds,
                len(self._descriptions.by_process_key),
            )
            line, ok = finish_run(self._start, self._export_on_finish.value, wait_limit=self._export_wait_limit)
            if causes and not causes.startswith("0 misses"):
                line += f"; {causes} (`oci-cache explain`)"
        except Exception as error:  # noqa: BLE001 - the cache must never fail the build
            line, ok = f"oci-cache: the end-of-run export failed: {type(error).__name__}: {error}", False
        if ok:
            logger.info(line)
        else:
            logger.warning(line)


def rules() -> Iterable:
    return [
        *collect_rules(),
        # By keyword: a dataclass up to 2.28, a Rust class (`#[new]` with named arguments) from 2.29.
        UnionRule(union_base=WorkunitsCallbackFactoryRequest, union_member=OciCacheCallbackFactoryRequest),
    ]


__all__: List[str] = ["EndOfRunCallback", "OciCacheCallbackFactoryRequest", "rules"]
