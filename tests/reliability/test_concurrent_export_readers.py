"""Four exporters to one ref and readers at the same time: zero entries lost.

tests/integration/cache_image/test_concurrent_export.py races 4 exporters (separate
local stores, as on separate CI machines) over 3 rounds and reads the result once at
the end. Here reader threads import the ref over and over *while* the exporters
race, each time on a fresh state directory with the serving stack `oci-cache serve
--cache-from` builds, and read every entry of the image they imported:

- every import succeeds (the ref always names a complete image, never a half-written
  one), and every action in it is a hit whose result and output blobs (files, tree,
  tree files, stdout) are byte-exact;
- every action whose export had returned OK before the reader began is in the image
  it imported: once an exporter reported success, no later export (another
  exporter's merge) drops its entries, and no reader misses them;
- at the end the image holds every action of every round.

    OCI_CACHE_READERS_REPORT   write the figures as JSON to this path
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Set

import pytest

_UNIT_SCENARIOS = Path(__file__).resolve().parents[1] / "unit" / "cache_image"
if str(_UNIT_SCENARIOS) not in sys.path:
    sys.path.insert(0, str(_UNIT_SCENARIOS))

from action_scenario import RecordedAction, make_action, store_action  # noqa: E402
from oci_cache.cache_entries import parse_cache_from, parse_cache_to  # noqa: E402
from oci_cache.cache_image.exporter import CacheExporter  # noqa: E402
from oci_cache.cache_image.serving_stack import open_serving_stack  # noqa: E402
from oci_cache.digests import Digest  # noqa: E402
from oci_cache.store.local_store import LocalStore  # noqa: E402
from registry_fixtures import RegistryServer, registry_plain  # noqa: E402,F401 - a fixture

EXPORTERS = 4


@dataclass
class ReaderFigures:
    imports: int = 0
    imports_during_exports: int = 0
    actions_read: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    images_seen: Set[str] = field(default_factory=set)
    failures: List[str] = field(default_factory=list)


class Race:
    """The exporters' state and what has been confirmed so far."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.expected: Dict[Digest, RecordedAction] = {}
        self.confirmed: Set[Digest] = set()
        self.lock = threading.Lock()
        self.exporting = threading.Event()
        self.done = threading.Event()
        self.keys: Dict[tuple, Digest] = {}
        """(exporter, round, n) → action digest."""

    def confirm(self, actions: List[RecordedAction]) -> None:
        with self.lock:
            self.confirmed.update(recorded.action for recorded in actions)

    def confirmed_now(self) -> Set[Digest]:
        with self.lock:
            return set(self.confirmed)


def _exporter(number: int, tmp_path: Path, cache_to: str, race: Race, barriers: List[threading.Barrier], errors: List[str], per_round: int) -> None:
    entry = parse_cache_to(cache_to)
    try:
        with LocalStore(tmp_path / f"writer{number}", 1 << 30) as store:
            exporter = CacheExporter(store, tmp_path / f"work{number}")
            for round_number in range(race.rounds):
                written = [race.expected[race.keys[(number, round_number, n)]] for n in range(per_round)]
                for recorded in written:
                    store_action(store, recorded)
                barriers[round_number].wait(120)
                report = exporter.export_entry(entry)
                if not report.ok:
                    errors.append(f"exporter {number} round {round_number}: {report.message}")
                    for barrier in barriers:
                        barrier.abort()
                    return
                race.confirm(written)
    except Exception as error:  # noqa: BLE001 - reported by the test
        errors.append(f"exporter {number}: {type(error).__name__}: {error}")
        for barrier in barriers:
            barrier.abort()


def _read_once(cache_from: str, state_dir: Path, race: Race, figures: ReaderFigures) -> None:
    during = race.exporting.is_set() and not race.done.is_set()
    confirmed = race.confirmed_now()  # taken before the import starts
    stack = open_serving_stack(state_dir, 1 << 32, [parse_cache_from(cache_from)], refresh_seconds=0)
    try:
        imports = stack.blobs.imports  # type: ignore[attr-defined]
        if not imports.wait_ready(30):
            figures.failures.append("an import did not finish within 30 s")
            return
        images = imports.images()
        if not images:
            if confirmed:
                figures.failures.append(f"no image imported although {len(confirmed)} actions were confirmed")
            return
        image = images[0]
        figures.images_seen.add(image.digest)
        in_image = {entry.action for entry in image.loaded.index.iter_actions()}
        missing = confirmed - in_image
        if missing:
            figures.failures.append(
                f"image {image.digest} lacks {len(missing)} action(s) whose export had returned OK"
            )
        for action in in_image:
            recorded = race.expected.get(action)
            if recorded is None:
                figures.failures.append(f"image {image.digest} holds an action nobody wrote: {action}")
                continue
            served = stack.action_cache.get_action_result(action)
            if served != recorded.result:
                figures.failures.append(f"action {action}: {'miss' if served is None else 'wrong result'}")
                continue
            figures.actions_read += 1
            for digest, data in recorded.outputs.items():
                if stack.blobs.read_bytes(digest) != data:
                    figures.failures.append(f"blob {digest} of action {action} is not byte-exact")
                figures.blobs_read += 1
                figures.bytes_read += len(data)
        figures.imports += 1
        figures.imports_during_exports += int(during)
    except Exception as error:  # noqa: BLE001 - every failure is reported with the rest
        figures.failures.append(f"reading {cache_from}: {type(error).__name__}: {error}")
    finally:
        stack.close()
        shutil.rmtree(state_dir, ignore_errors=True)


def _reader(number: int, tmp_path: Path, cache_from: str, race: Race, figures: ReaderFigures) -> None:
    iteration = 0
    while not race.done.is_set():
        iteration += 1
        _read_once(cache_from, tmp_path / f"reader{number}-{iteration}", race, figures)


def _race(tmp_path: Path, cache_to: str, cache_from: str, *, rounds: int, readers: int, per_round: int) -> Dict[str, object]:
    race = Race(rounds)
    for number in range(EXPORTERS):
        for round_number in range(rounds):
            for n in range(per_round):
                seed = 10_000 * (number + 1) + 100 * round_number + n
                recorded = make_action(seed, file_sizes=(100, 3000), tree_file_sizes=(200, 20_000))
                race.keys[(number, round_number, n)] = recorded.action
                race.expected[recorded.action] = recorded
    figures = [ReaderFigures() for _ in range(readers)]
    errors: List[str] = []
    barriers = [threading.Barrier(EXPORTERS) for _ in range(rounds)]
    reader_threads = [
        threading.Thread(target=_reader, args=(n, tmp_path, cache_from, race, figures[n]), daemon=True)
        for n in range(readers)
    ]
    exporter_threads = [
        threading.Thread(target=_exporter, args=(n, tmp_path, cache_to, race, barriers, errors, per_round), daemon=True)
        for n in range(EXPORTERS)
    ]
    started = time.monotonic()
    race.exporting.set()
    for thread in reader_threads + exporter_threads:
        thread.start()
    for thread in exporter_threads:
        thread.join(300)
        assert not thread.is_alive(), "an exporter hung"
    race.done.set()
    for thread in reader_threads:
        thread.join(120)
        assert not thread.is_alive(), "a reader hung"
    seconds = time.monotonic() - started
    assert not errors, errors

    # Afterwards: one more full read, which must see every action of every round.
    final = ReaderFigures()
    race.confirm(list(race.expected.values()))
    _read_once(cache_from, tmp_path / "reader-final", race, final)
    failures = [f for reader in figures + [final] for f in reader.failures]
    summary: Dict[str, object] = {
        "exporters": EXPORTERS,
        "rounds": rounds,
        "actions_exported": len(race.expected),
        "readers": readers,
        "imports": sum(r.imports for r in figures),
        "imports_started_during_exports": sum(r.imports_during_exports for r in figures),
        "distinct_images_read": len(set().union(*(r.images_seen for r in figures))),
        "actions_read": sum(r.actions_read for r in figures),
        "blobs_read_byte_exact": sum(r.blobs_read for r in figures),
        "bytes_read": sum(r.bytes_read for r in figures),
        "final_actions": final.actions_read,
        "failures": len(failures),
        "seconds": round(seconds, 1),
    }
    print(json.dumps(summary, indent=2))
    report = os.environ.get("OCI_CACHE_READERS_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as out:
            out.write(json.dumps({"cache_to": cache_to.split(",")[0], **summary}) + "\n")
    assert not failures, failures[:10]
    assert final.actions_read == len(race.expected), "the final image lacks actions"
    assert summary["imports_started_during_exports"] >= readers, "the readers did not overlap the exports"
    return summary


def _entries(where: str, registry: RegistryServer, tmp_path: Path, tag: str) -> tuple:
    if where == "registry":
        ref = f"{registry.host}/readers/{os.urandom(6).hex()}:{tag}"
        return f"type=registry,ref={ref},mode=min", ref
    layout = tmp_path / "layout"
    return f"type=local,dest={layout},tag={tag},mode=min", f"type=local,src={layout},tag={tag}"


@pytest.mark.parametrize("where", ["registry", "layout"])
def test_four_exporters_and_readers_lose_nothing(registry_plain: RegistryServer, tmp_path: Path, where: str) -> None:  # noqa: F811
    cache_to, cache_from = _entries(where, registry_plain, tmp_path, "shared")
    _race(tmp_path, cache_to, cache_from, rounds=3, readers=2, per_round=2)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["registry", "layout"])
def test_four_exporters_and_readers_lose_nothing_long(registry_plain: RegistryServer, tmp_path: Path, where: str) -> None:  # noqa: F811
    cache_to, cache_from = _entries(where, registry_plain, tmp_path, "shared")
    _race(tmp_path, cache_to, cache_from, rounds=12, readers=4, per_round=3)


def test_a_reader_reports_a_confirmed_action_missing_and_a_wrong_byte(tmp_path: Path) -> None:
    """The reader's checks can fail: an action confirmed but absent, and an output blob
    whose expected bytes differ from what the image serves."""
    layout = tmp_path / "layout"
    cache_to, cache_from = f"type=local,dest={layout},tag=t,mode=min", f"type=local,src={layout},tag=t"
    race = Race(rounds=1)
    exported, absent = make_action(1), make_action(2)
    with LocalStore(tmp_path / "writer", 1 << 30) as store:
        store_action(store, exported)
        assert CacheExporter(store, tmp_path / "work").export_entry(parse_cache_to(cache_to)).ok
    race.expected = {exported.action: exported, absent.action: absent}
    race.confirm([exported])
    figures = ReaderFigures()
    _read_once(cache_from, tmp_path / "reader1", race, figures)
    assert figures.failures == [] and figures.actions_read == 1

    race.confirm([absent])
    digest, data = next(iter(exported.outputs.items()))
    exported.outputs[digest] = data[:-1] + bytes([data[-1] ^ 1])
    figures = ReaderFigures()
    _read_once(cache_from, tmp_path / "reader2", race, figures)
    assert len(figures.failures) == 2, figures.failures
    assert "lacks 1 action" in figures.failures[0] and "not byte-exact" in figures.failures[1]
