"""The end-of-run export onto a large cache image (issue 4: the end of a Pants run).

Builds an image of N actions (3 blobs each: the result and 2 outputs) in an OCI
layout, then times, with a local store holding one action of its own:

  publish         an export adding one new action (merge, index, manifest)
  unchanged-full  an export with nothing new by a fresh exporter (builds the plan)
  unchanged       the same export once the image is settled (unchanged_export.py)

and, in the same run, the ceilings they are compared with:

  index-rewrite   decode the image's entry index, then encode an index of the same
                  entries: the least work any export that rewrites the index does
  index-read      read the manifest, config and index (load_cache_image): the least
                  work any export that looks at the image does

Prints medians and the ratios (this / ceiling).

    python bench/export_large_image.py [--entries N] [--runs R]   (default 100000, 3)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import _harness

_harness.import_path_for_repo()
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "cache_image"))

from action_scenario import make_action, store_action  # noqa: E402
from cache_image_builder import push_cache_image, synthetic_actions  # noqa: E402
from oci_cache.cache_entries import parse_cache_to  # noqa: E402
from oci_cache.cache_image import load_cache_image  # noqa: E402
from oci_cache.cache_image.exporting.exporter import UNCHANGED_MESSAGE, CacheExporter  # noqa: E402
from oci_cache.image_format.compression import Compression  # noqa: E402
from oci_cache.image_format.entry_index import encode_index  # noqa: E402
from oci_cache.oci import OciLayoutTarget  # noqa: E402
from oci_cache.store.local_store import LocalStore  # noqa: E402


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="export-large-"))
    try:
        layout = work / "layout"
        began = time.perf_counter()
        actions = synthetic_actions(count=args.entries, outputs_per_action=2, seed=1)
        push_cache_image(OciLayoutTarget(layout, tag="latest"), "latest", actions, workdir=work / "build",
                         compression=Compression.ZSTD)
        del actions
        print(f"built a {args.entries:,}-action image in {time.perf_counter() - began:.1f}s")
        entry = parse_cache_to(f"type=local,dest={layout}")
        samples: dict = {name: [] for name in ("publish", "unchanged-full", "unchanged", "index-rewrite", "index-read")}
        for run in range(args.runs):
            store = LocalStore(work / f"store-{run}", 1 << 30)
            try:
                store_action(store, make_action(1_000_000 + run))
                exporter = CacheExporter(store, work / "export", confirm_delay=0)
                samples["publish"].append(timed(lambda: exporter.export([entry])))
                fresh = CacheExporter(store, work / "export", confirm_delay=0)
                reports: List[str] = []
                samples["unchanged-full"].append(timed(lambda: reports.append(fresh.export([entry]).targets[0].message)))
                samples["unchanged"].append(timed(lambda: reports.append(fresh.export([entry]).targets[0].message)))
                assert reports == [UNCHANGED_MESSAGE, UNCHANGED_MESSAGE], reports
            finally:
                store.close()
            target = OciLayoutTarget(layout, tag="latest")
            image_box: list = []
            samples["index-read"].append(timed(lambda: image_box.append(load_cache_image(target))))
            image = image_box[0]

            def rewrite() -> None:
                index = image.index
                encode_index(index.layers, list(index.iter_blobs()), list(index.iter_actions()))

            samples["index-rewrite"].append(timed(rewrite))
        median = {name: statistics.median(values) for name, values in samples.items()}
        print(f"\n{'export':<16}{'median s':>10}   ceiling{'':<10}{'median s':>10}   this / ceiling")
        for name, ceiling in (("publish", "index-rewrite"), ("unchanged-full", "index-rewrite"), ("unchanged", "index-read")):
            print(f"{name:<16}{median[name]:>10.2f}   {ceiling:<17}{median[ceiling]:>10.2f}   {median[name] / median[ceiling]:.2f}")
        print(f"\nunchanged (settled) vs unchanged-full: {median['unchanged-full'] / median['unchanged']:.1f}x faster")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
