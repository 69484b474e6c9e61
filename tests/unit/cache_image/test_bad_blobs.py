"""A blob set aside after failed reads is offered again after a back-off that doubles
(bad_blobs.py); an impossible entry stays set aside; a good read clears the record."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from action_scenario import make_action, store_action
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.importing.bad_blobs import RECHECK_FIRST_SECONDS, RECHECK_MAX_SECONDS, BadBlobs
from oci_cache.cache_image.exporting.exporter import CacheExporter
from oci_cache.cache_image.importing.imported_images import CONTENT_ATTEMPTS, ImportedImage, ImportSet
from oci_cache.digests import Digest
from oci_cache.store.local_store import LocalStore

DIGEST = Digest.of(b"some blob")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_back_off_doubles_up_to_the_maximum_and_a_good_read_clears_it() -> None:
    clock = Clock()
    bad = BadBlobs(clock)
    assert not bad.is_set_aside(DIGEST) and not bad.was_set_aside(DIGEST)
    backoffs: List[float] = []
    for _ in range(6):
        backoffs.append(bad.set_aside(DIGEST))
        assert bad.is_set_aside(DIGEST)
        clock.now += backoffs[-1] - 1
        assert bad.is_set_aside(DIGEST)
        clock.now += 1
        assert not bad.is_set_aside(DIGEST) and bad.was_set_aside(DIGEST)
    assert backoffs == [300.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0]
    assert (RECHECK_FIRST_SECONDS, RECHECK_MAX_SECONDS) == (backoffs[0], backoffs[-1])
    bad.forget(DIGEST)
    assert not bad.was_set_aside(DIGEST) and bad.set_aside(DIGEST) == RECHECK_FIRST_SECONDS


def test_set_aside_for_good_is_never_offered_again() -> None:
    clock = Clock()
    bad = BadBlobs(clock)
    bad.set_aside_for_good(DIGEST)
    bad.set_aside(DIGEST)  # a later failed read does not shorten it
    clock.now += 10 * RECHECK_MAX_SECONDS
    assert bad.is_set_aside(DIGEST)


class DamagingTarget:
    """The real layout target, but every range read comes back altered while `damaging`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.damaging = True
        self.reads = 0

    def read_blob(self, digest: Any, offset: int = 0, length: Any = None) -> bytes:
        self.reads += 1
        data = self.inner.read_blob(digest, offset, length)
        if self.damaging and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_imported_blob_damaged_on_every_read_is_a_miss_until_the_back_off_passes(tmp_path: Path) -> None:
    source = LocalStore(tmp_path / "source", 1 << 30)
    recorded = make_action(5)
    store_action(source, recorded)
    layout = tmp_path / "layout"
    assert CacheExporter(source, tmp_path / "work", confirm_delay=0).export([parse_cache_to(f"type=local,dest={layout}")]).ok
    source.close()

    entry = parse_cache_from(f"type=local,src={layout}")
    target = DamagingTarget(open_entry_target(entry))
    clock = Clock()
    imports = ImportSet(expected=1)
    imports.set_image(0, ImportedImage("layout", target, load_cache_image(open_entry_target(entry)), clock))  # type: ignore[arg-type]
    output = next(iter(recorded.outputs))
    local = LocalStore(tmp_path / "local", 1 << 30)
    try:
        assert imports.has_blob(output)
        assert imports.fetch_into(output, local) is False
        assert target.reads == CONTENT_ATTEMPTS
        assert not imports.has_blob(output)  # set aside: a miss, no reads
        assert imports.fetch_into(output, local) is False and target.reads == CONTENT_ATTEMPTS

        target.damaging = False  # the wire is clean again
        clock.now += RECHECK_FIRST_SECONDS - 1
        assert not imports.has_blob(output)
        clock.now += 1
        assert imports.has_blob(output)
        assert imports.fetch_into(output, local) is True
        assert local.read_bytes(output) == recorded.outputs[output]
        assert not imports.images()[0].bad_blobs.was_set_aside(output)
    finally:
        local.close()
