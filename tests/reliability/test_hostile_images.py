"""Hostile cache images end to end (issue 5, item 4b): a real `oci-cache serve` imports
them with --cache-from from a real docker-registry and from OCI layout directories,
and an independent REAPI client (tests/reapi_client.py) asks for what they claim to hold.

Two kinds of damage, two outcomes (the design, docs/format.md):
- a bad manifest, config, index layer or entry index: the WHOLE image is refused at
  import — one warning naming the cache-from entry and what is wrong, nothing served
  from it, the server up and serving other images;
- a bad data-layer range (a bomb, a tar entry that is a link or has an unsafe name, a
  lying header, altered bytes, a range outside the layer): only that BLOB is refused,
  when a client first needs it — one warning naming the entry and the blob; the action
  referencing it is a miss (NOT_FOUND), the blob is then reported missing; the image's
  other entries are still served byte-exact.
In every case the serve process's peak RSS (VmHWM) and its state directory stay bounded.

The library-level parsers have their own hostile-input tests (tests/unit/image_format/
test_layer_reader_hostile.py, test_entry_index.py, test_manifest.py); this module checks
that the whole server behaves, and that the warnings are one per problem.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import grpc
import pytest

from cache_image_builder import SyntheticAction, synthetic_actions
from hostile_images import (
    HostileImage,
    PushedImage,
    blob_entry_bytes,
    compress_unit,
    foreign_tar_entry,
    index_bomb,
    index_header,
    zeros_bomb,
)
from oci_cache.cache_entries import parse_cache_from
from oci_cache.cache_image import open_entry_target
from oci_cache.digests import Digest
from oci_cache.image_format import tar_headers
from oci_cache.image_format.compression import Compression
from oci_cache.reapi import bytestream_pb2, bytestream_pb2_grpc
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.reapi import remote_execution_pb2_grpc as re_grpc
from process_watch import peak_rss_bytes
from reapi_client import ReapiClient
from registry_fixtures import RegistryServer, start_registry
from server_fixtures import ServerProcess, start_server

pytestmark = pytest.mark.registry

RSS_BOUND_BYTES = 100 << 20
"""Peak RSS of the serve process, whatever the images hold (idle it is ~45 MiB; a layout manifest may cost 16 MiB more)."""
STATE_BOUND_BYTES = 16 << 20
"""The state directory after the run (the good entries fetched are a few KiB)."""
ZSTD_BOMB_BYTES = 64 << 30  # inflates to 64 GiB from ~2 MiB
GZIP_BOMB_BYTES = 4 << 30  # inflates to 4 GiB from ~4 MiB


# ----------------------------------------------------------------------------- plumbing


def _registry_target(registry: RegistryServer, repo: str):  # type: ignore[no-untyped-def]
    return open_entry_target(parse_cache_from(f"{registry.host}/{repo}:cache"))


def _layout_target(directory: Path):  # type: ignore[no-untyped-def]
    return open_entry_target(parse_cache_from(f"type=local,src={directory},tag=cache"))


def _storage_file(registry: RegistryServer, digest: str) -> Path:
    hex_digest = digest.split(":", 1)[1]
    return Path(registry.root) / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


def _flip_byte(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0xFF
    path.write_bytes(bytes(raw))


def _warnings(server: ServerProcess) -> List[str]:
    return [line for line in server.log_text().splitlines() if " WARNING " in line]


def _wait_for_log(server: ServerProcess, pattern: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, server.log_text()):
            return
        if not server.is_running():
            break
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}; log:\n{server.log_text()[-4000:]}")


def _get_result(channel: grpc.Channel, action: Digest) -> Optional[re_pb2.ActionResult]:
    stub = re_grpc.ActionCacheStub(channel)
    try:
        return stub.GetActionResult(re_pb2.GetActionResultRequest(action_digest=action.to_proto()), timeout=60)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
        return None


def _read_status(channel: grpc.Channel, digest: Digest) -> grpc.StatusCode:
    stub = bytestream_pb2_grpc.ByteStreamStub(channel)
    try:
        list(stub.Read(bytestream_pb2.ReadRequest(resource_name=f"blobs/{digest.hash}/{digest.size_bytes}"), timeout=60))
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _missing(channel: grpc.Channel, digests: List[Digest]) -> List[Digest]:
    stub = re_grpc.ContentAddressableStorageStub(channel)
    answer = stub.FindMissingBlobs(
        re_pb2.FindMissingBlobsRequest(blob_digests=[d.to_proto() for d in digests]), timeout=60
    )
    return [Digest(d.hash, d.size_bytes) for d in answer.missing_blob_digests]


def _served_byte_exact(channel: grpc.Channel, action: SyntheticAction) -> bool:
    result = _get_result(channel, action.action)
    if result is None:
        return False
    assert result.SerializeToString(deterministic=True) == re_pb2.ActionResult.FromString(
        action.result
    ).SerializeToString(deterministic=True)
    client = ReapiClient(channel)
    for digest, data in action.outputs:
        assert client.read_blob(digest.to_proto()) == data
    return True


def _nothing_served(channel: grpc.Channel, actions: List[SyntheticAction]) -> None:
    for action in actions:
        assert _get_result(channel, action.action) is None
        outputs = [digest for digest, _ in action.outputs]
        assert _missing(channel, outputs) == outputs
        assert all(_read_status(channel, digest) == grpc.StatusCode.NOT_FOUND for digest in outputs)


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under `root` (what the state directory holds)."""
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def _check_bounds(server: ServerProcess, report: Dict[str, object]) -> None:
    assert server.is_running(), server.log_text()[-4000:]
    peak = peak_rss_bytes(server.pid) or 0
    state = tree_bytes(server.state_dir)
    report["peak_rss_mib"] = round(peak / (1 << 20), 1)
    report["state_dir_kib"] = round(state / 1024, 1)
    assert peak < RSS_BOUND_BYTES, f"peak RSS {peak} bytes"
    assert state < STATE_BOUND_BYTES, f"state dir holds {state} bytes"


# ----------------------------------------------------------------------------- image-level cases


@dataclass
class ImportCase:
    name: str
    where: str  # "registry" or "layout"
    change: Callable[[HostileImage], None]
    message: str  # a regular expression the warning must match
    after_push: Optional[Callable[[RegistryServer, PushedImage], None]] = None


def _set(attribute: str, value: object) -> Callable[[HostileImage], None]:
    return lambda image: setattr(image, attribute, value)


def _sized(delta_or_size: int, absolute: bool = False) -> Callable[[object], object]:
    from dataclasses import replace

    return lambda d: replace(d, size=delta_or_size if absolute else d.size + delta_or_size)  # type: ignore[type-var]


def _both(*changes: Callable[[HostileImage], None]) -> Callable[[HostileImage], None]:
    def change(image: HostileImage) -> None:
        for one in changes:
            one(image)

    return change


def _huge_manifest(manifest: bytes) -> bytes:
    return manifest[:-1] + b',"padding":"' + b"x" * (64 << 20) + b'"}'


def _padded_config(config: bytes) -> bytes:
    return config[:-1] + b',"pad":"' + b"z" * (128 << 20) + b'"}'


def _index_layer_altered(registry: RegistryServer, pushed: PushedImage) -> None:
    _flip_byte(_storage_file(registry, pushed.index_layer_digest), 700)


def _config_altered(registry: RegistryServer, pushed: PushedImage) -> None:
    _flip_byte(_storage_file(registry, pushed.config_digest), 20)


def _format_version(version: str) -> Callable[[HostileImage], None]:
    return _set("config_hook", lambda config: config.update(formatVersion=version))


IMPORT_CASES = [
    ImportCase("manifest is not JSON", "layout", _set("manifest_hook", lambda m: b"\x00garbage" + m[:40]), r"not valid JSON"),
    ImportCase("manifest of 64 MiB", "layout", _set("manifest_hook", _huge_manifest), r"manifest sha256:\w+ is over the 16777216-byte limit"),
    ImportCase(
        "config blob of 128 MiB, descriptor says 490 bytes",
        "registry",
        _both(_set("config_bytes_hook", _padded_config), _set("config_descriptor_hook", _sized(490, absolute=True))),
        r"config .* is larger than the 490 bytes its descriptor says",
    ),
    ImportCase(
        "index layer of 128 MiB, descriptor says 5 KiB",
        "layout",
        _both(_set("index_layer_hook", lambda layer: layer + bytes(128 << 20)), _set("index_descriptor_hook", _sized(5120, absolute=True))),
        r"index layer .* is larger than the 5120 bytes its descriptor says",
    ),
    ImportCase(
        "index layer smaller than its descriptor",
        "registry",
        _set("index_descriptor_hook", _sized(+4096)),
        r"index layer is corrupt: .*expected",
    ),
    ImportCase(
        "index layer larger than its descriptor",
        "registry",
        _set("index_descriptor_hook", _sized(-100)),
        r"index layer .* is larger than the \d+ bytes its descriptor says",
    ),
    ImportCase("config size wrong in the manifest", "registry", _set("config_descriptor_hook", _sized(+1)), r"config is corrupt"),
    ImportCase("config bytes altered in the registry", "registry", lambda image: None, r"config is corrupt: .*hashes to", _config_altered),
    ImportCase("index layer bytes altered in the registry", "registry", lambda image: None, r"index layer is corrupt: .*hashes to", _index_layer_altered),
    ImportCase("entry index truncated (digest consistent)", "registry", _set("index_blob_hook", lambda b: b[: len(b) // 2]), r"header declares"),
    ImportCase("entry index truncated to 40 bytes", "layout", _set("index_blob_hook", lambda b: b[:40]), r"shorter than its header"),
    ImportCase("entry index with a bad magic", "layout", _set("index_blob_hook", lambda b: b"NOTINDEX" + b[8:]), r"bad magic"),
    ImportCase(
        "entry index body is garbage",
        "registry",
        _set("index_blob_hook", lambda b: b[: len(b) - 40] + bytes(range(40))),
        r"index body (is corrupt|frame declares|is not a zstd frame)",
    ),
    ImportCase("entry index declaring 2^60 blobs", "registry", _set("index_blob_hook", lambda b: index_header(b, blob_count=1 << 60)), r"more entries than its body"),
    ImportCase("entry index body declaring 4 GiB", "registry", _set("index_blob_hook", lambda b: index_header(b, uncompressed_size=4 << 30)), r"implausible body"),
    ImportCase("entry index body a zstd bomb (1 GiB)", "layout", _set("index_blob_hook", index_bomb), r"index body is corrupt"),
    ImportCase("entry index major version 9", "layout", _set("index_blob_hook", lambda b: index_header(b, major=9)), r"newer .*upgrade pants-oci-cache"),
    ImportCase("index layer declaring 1 PiB", "registry", _both(_set("index_descriptor_hook", _sized(1 << 50, absolute=True))), r"index layer of \d+ bytes exceeds"),
    ImportCase("index layer declaring 2^63 bytes", "layout", _set("index_descriptor_hook", _sized(1 << 63, absolute=True)), r"invalid size"),
    ImportCase("config format version 2.0", "registry", _format_version("2.0"), r"newer pants-oci-cache; treated as a miss"),
    ImportCase("config format version 0.9", "registry", _format_version("0.9"), r"unknown cache image format version 0.9"),
    ImportCase("config of 2 MiB", "layout", _set("config_bytes_hook", lambda c: c[:-1] + b',"pad":"' + b"y" * (2 << 20) + b'"}'), r"config of \d+ bytes exceeds"),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("hostile-registry"))
    yield server
    server.stop()


def _push_case(case: ImportCase, number: int, registry: RegistryServer, workdir: Path) -> Tuple[str, List[SyntheticAction]]:
    """Pushes the case's image; returns its cache-from entry and the actions it claims."""
    actions = synthetic_actions(2, seed=1000 + number, outputs_per_action=2)
    image = HostileImage(actions)
    case.change(image)
    if case.where == "registry":
        repo = f"hostile/import-{number}"
        target = _registry_target(registry, repo)
        entry = f"{registry.host}/{repo}:cache"
    else:
        directory = workdir / f"layout-{number}"
        target = _layout_target(directory)
        entry = f"type=local,src={directory},tag=cache"
    try:
        pushed = image.push(target, "cache")
    except Exception as error:  # noqa: BLE001 - a registry refusing the image is an outcome too
        return f"refused by the registry: {error}", actions
    finally:
        target.close()
    if case.after_push is not None:
        case.after_push(registry, pushed)
    return entry, actions


def test_hostile_images_are_refused_whole_with_one_warning_each(
    registry: RegistryServer, tmp_path: Path
) -> None:
    good_actions = synthetic_actions(3, seed=1, outputs_per_action=2)
    good_target = _registry_target(registry, "hostile/good")
    HostileImage(good_actions).push(good_target, "cache")
    good_target.close()
    good_entry = f"{registry.host}/hostile/good:cache"

    pushed: List[Tuple[ImportCase, str, List[SyntheticAction]]] = []
    for number, case in enumerate(IMPORT_CASES):
        entry, actions = _push_case(case, number, registry, tmp_path)
        pushed.append((case, entry, actions))
    imported = [(case, entry, actions) for case, entry, actions in pushed if not entry.startswith("refused")]
    refused = [(case.name, entry) for case, entry, _ in pushed if entry.startswith("refused")]
    assert refused == []

    args: List[str] = []
    for _, entry, _ in imported:
        args += ["--cache-from", entry]
    args += ["--cache-from", good_entry, "--max-size", "256MiB"]
    server = start_server(tmp_path / "state", *args)
    try:
        _wait_for_log(server, re.escape(f"cache-from {parse_cache_from(good_entry).to_text()}: imported"))
        channel = server.channel()
        assert all(_served_byte_exact(channel, action) for action in good_actions)
        for case, entry, actions in imported:
            _nothing_served(channel, actions)
        warnings = _warnings(server)
        report: Dict[str, object] = {}
        for case, entry, actions in imported:
            entry_text = parse_cache_from(entry).to_text()
            mine = [w for w in warnings if f"cache-from {entry_text}:" in w]
            assert len(mine) == 1, (case.name, mine)
            assert re.search(case.message, mine[0]), (case.name, mine[0])
            report[case.name + " / " + case.where] = mine[0].split(": ", 1)[1]
        assert len(warnings) == len(imported), warnings
        _check_bounds(server, report)
        print(json.dumps(report, indent=1))  # the figures of docs/reliability.md (pytest -s)
    finally:
        server.stop()


# ----------------------------------------------------------------------------- blob-level cases


@dataclass
class BlobCase:
    name: str
    damage: Callable[[HostileImage, Digest, bytes], None]
    """Makes the victim blob's range in the image hostile (before the push)."""
    message: str
    after_push: Optional[Callable[["_Where", PushedImage, HostileImage, Digest], None]] = None


def _unit(make: Callable[[Digest, bytes, Compression], bytes]) -> Callable[[HostileImage, Digest, bytes], None]:
    def damage(image: HostileImage, victim: Digest, data: bytes) -> None:
        image.replace_unit(victim, make(victim, data, image.compression))

    return damage


def _foreign(name_of: Callable[[Digest], str], **fields: object) -> Callable[[HostileImage, Digest, bytes], None]:
    return _unit(lambda victim, data, compression: compress_unit(foreign_tar_entry(name_of(victim), data, **fields), compression))


def _trailing_bomb(victim: Digest, data: bytes, compression: Compression) -> bytes:
    inflated = ZSTD_BOMB_BYTES if compression is Compression.ZSTD else GZIP_BOMB_BYTES
    return compress_unit(blob_entry_bytes(victim, data), compression) + zeros_bomb(compression, inflated)


def _zeros_only_bomb(victim: Digest, data: bytes, compression: Compression) -> bytes:
    return zeros_bomb(compression, 4 << 30 if compression is Compression.ZSTD else 1 << 30)


def _huge_header(victim: Digest, data: bytes, compression: Compression) -> bytes:
    header = tar_headers.encode_file_header(tar_headers.blob_entry_name(victim.hash), 1 << 62)
    return compress_unit(header + data, compression)


def _entry_change(**changes: int) -> Callable[[HostileImage, Digest, bytes], None]:
    return lambda image, victim, data: image.entry_changes.__setitem__(victim, changes)


@dataclass
class _Where:
    registry: Optional[RegistryServer]
    layout: Optional[Path]


def _alter_range(where: _Where, pushed: PushedImage, image: HostileImage, victim: Digest) -> None:
    layer = pushed.parts[pushed.data_layer_digest]
    units = [compress_unit(blob_entry_bytes(d, b), image.compression) for d, b in image.blobs().items()]
    offset = sum(len(u) for u in units[: list(image.blobs()).index(victim)])
    path = (
        _storage_file(where.registry, pushed.data_layer_digest)
        if where.registry is not None
        else where.layout / "blobs/sha256" / pushed.data_layer_digest.split(":", 1)[1]  # type: ignore[operator]
    )
    assert path.read_bytes() == layer
    _flip_byte(path, offset + len(units[list(image.blobs()).index(victim)]) // 2)


BLOB_CASES = [
    BlobCase("layer bytes altered in storage (digest mismatch)", lambda image, victim, data: None, r"(invalid (zstd|gzip) data|SHA-256|checksum|not a POSIX)", _alter_range),
    BlobCase("decompression bomb after the entry", _unit(_trailing_bomb), r"data follows the entry"),
    BlobCase("decompression bomb of zeros in place of the entry", _unit(_zeros_only_bomb), r"end of archive where the entry"),
    BlobCase("tar entry with an absolute path", _foreign(lambda v: "/etc/passwd"), r"unsafe tar entry name '/etc/passwd'"),
    BlobCase("tar entry with a .. path", _foreign(lambda v: "../../" + tar_headers.blob_entry_name(v.hash)), r"unsafe tar entry name '\.\./\.\./blobs"),
    BlobCase("symlink entry", _foreign(lambda v: tar_headers.blob_entry_name(v.hash), type=tarfile.SYMTYPE, linkname="/etc/shadow"), r"tar entry has a link name"),
    BlobCase("hardlink entry", _foreign(lambda v: tar_headers.blob_entry_name(v.hash), type=tarfile.LNKTYPE, linkname="etc/passwd"), r"tar entry has a link name"),
    BlobCase("tar header declaring 2^62 bytes", _unit(_huge_header), r"has 4611686018427387904 bytes, expected"),
    BlobCase("index entry whose range ends past its layer", _entry_change(compressed_length=1 << 62), r"points outside its layer"),
]


def _blob_image(compression: Compression, seed: int) -> Tuple[HostileImage, List[SyntheticAction], Dict[str, Tuple[SyntheticAction, Digest]]]:
    """An image with one victim action per BLOB_CASE and two intact control actions."""
    actions = synthetic_actions(len(BLOB_CASES) + 2, seed=seed, outputs_per_action=2, min_size=2000, max_size=9000)
    image = HostileImage(actions, compression)
    victims: Dict[str, Tuple[SyntheticAction, Digest]] = {}
    for case, action in zip(BLOB_CASES, actions):
        victim, data = max(action.outputs, key=lambda item: item[0].size_bytes)
        case.damage(image, victim, data)
        victims[case.name] = (action, victim)
    return image, actions[len(BLOB_CASES) :], victims


@pytest.mark.parametrize("where, compression", [("registry", Compression.ZSTD), ("registry", Compression.GZIP), ("layout", Compression.ZSTD)])
def test_hostile_ranges_are_refused_blob_by_blob_with_one_warning_each(
    registry: RegistryServer, tmp_path: Path, where: str, compression: Compression
) -> None:
    seed = {"registry": 5000, "layout": 6000}[where] + (100 if compression is Compression.GZIP else 0)
    image, controls, victims = _blob_image(compression, seed)
    if where == "registry":
        repo = f"hostile/blobs-{compression.value}"
        target = _registry_target(registry, repo)
        entry = f"{registry.host}/{repo}:cache"
        place = _Where(registry, None)
    else:
        layout = tmp_path / "layout"
        target = _layout_target(layout)
        entry = f"type=local,src={layout},tag=cache"
        place = _Where(None, layout)
    pushed = image.push(target, "cache")
    target.close()
    for case in BLOB_CASES:
        if case.after_push is not None:
            case.after_push(place, pushed, image, victims[case.name][1])
    entry_text = parse_cache_from(entry).to_text()

    server = start_server(tmp_path / "state", "--cache-from", entry, "--max-size", "256MiB")
    try:
        _wait_for_log(server, re.escape(f"cache-from {entry_text}: imported"))
        channel = server.channel()
        report: Dict[str, object] = {}
        for case in BLOB_CASES:
            action, victim = victims[case.name]
            before = peak_rss_bytes(server.pid) or 0
            assert _get_result(channel, action.action) is None, case.name  # a miss, not a broken build
            assert _read_status(channel, victim) == grpc.StatusCode.NOT_FOUND, case.name
            assert _missing(channel, [victim]) == [victim], case.name  # no longer claimed
            assert _get_result(channel, action.action) is None, case.name  # and still a miss, without a new warning
            mine = [w for w in _warnings(server) if victim.hash in w]
            assert len(mine) == 1, (case.name, mine)
            assert f"cache-from {entry_text}" in mine[0] or entry_text in mine[0], mine[0]
            assert re.search(case.message, mine[0]), (case.name, mine[0])
            report[case.name] = {
                "warning": mine[0].split(": ", 1)[1],
                "peak_rss_mib": round((peak_rss_bytes(server.pid) or 0) / (1 << 20), 1),
                "rss_growth_mib": round(((peak_rss_bytes(server.pid) or 0) - before) / (1 << 20), 1),
            }
        # The image's intact entries are still served, byte-exact.
        assert all(_served_byte_exact(channel, action) for action in controls)
        assert len(_warnings(server)) == len(BLOB_CASES), _warnings(server)
        _check_bounds(server, report)
        print(json.dumps(report, indent=1))
    finally:
        server.stop()


def _action_with_output(seed: int, output: Digest) -> SyntheticAction:
    result = re_pb2.ActionResult(output_files=[re_pb2.OutputFile(path="out/huge", digest=output.to_proto())])
    return SyntheticAction(Digest.of(b"action with a huge output %d" % seed), result.SerializeToString(), ())


def test_lying_sizes_cost_only_the_entries_they_touch(registry: RegistryServer, tmp_path: Path) -> None:
    """A data layer whose descriptor (and index) overstate its size, an entry placed in
    the part that does not exist, and an entry (and the result naming it) declaring a
    blob of 2^62 bytes: those two are misses with one warning each; the entries inside
    the real bytes are verified and served — the lie about the layer's size costs nothing
    else (blobs are verified one by one, never trusted by size)."""
    actions = synthetic_actions(3, seed=7000, outputs_per_action=2)
    real = b"a blob whose index entry claims 2^62 bytes\n" * 30
    huge = Digest(Digest.of(real).hash, 1 << 62)
    huge_action = _action_with_output(7000, huge)
    image = HostileImage(actions + [huge_action])
    image.actions[-1] = SyntheticAction(huge_action.action, huge_action.result, ((huge, real),))
    image.layer_descriptor_hook = _sized(+(1 << 20))  # type: ignore[assignment]
    past_end, past_end_data = actions[1].outputs[0]
    layer, _, _ = image._data_layer()
    image.entry_changes[past_end] = {"compressed_offset": len(layer) + 4096}
    target = _registry_target(registry, "hostile/sizes")
    image.push(target, "cache")
    target.close()
    entry_text = parse_cache_from(f"{registry.host}/hostile/sizes:cache").to_text()

    server = start_server(tmp_path / "state", "--cache-from", f"{registry.host}/hostile/sizes:cache", "--max-size", "256MiB")
    try:
        _wait_for_log(server, re.escape(f"cache-from {entry_text}: imported"))
        channel = server.channel()
        assert _served_byte_exact(channel, actions[0]) and _served_byte_exact(channel, actions[2])
        for _ in range(2):
            assert _get_result(channel, actions[1].action) is None
            assert _get_result(channel, huge_action.action) is None
        assert _read_status(channel, past_end) == grpc.StatusCode.NOT_FOUND
        warnings = _warnings(server)
        for victim in (past_end, huge):
            mine = [w for w in warnings if f"{victim.hash}/{victim.size_bytes}" in w]
            assert len(mine) == 1, (victim, warnings)
            assert entry_text in mine[0]
        assert len(warnings) == 2, warnings
        _check_bounds(server, {})
    finally:
        server.stop()


# ----------------------------------------------------------------------------- slow: one server per input


@pytest.mark.slow
@pytest.mark.parametrize("number", range(len(IMPORT_CASES)), ids=[f"{c.name} ({c.where})" for c in IMPORT_CASES])
def test_each_hostile_image_alone_in_its_own_server(registry: RegistryServer, tmp_path: Path, number: int) -> None:
    """The figures of docs/reliability.md's table: each input alone, so that the serve
    process's peak RSS is that input's."""
    case = IMPORT_CASES[number]
    entry, actions = _push_case(case, 100 + number, registry, tmp_path)
    server = start_server(tmp_path / "state", "--cache-from", entry, "--max-size", "256MiB")
    try:
        entry_text = parse_cache_from(entry).to_text()
        _wait_for_log(server, re.escape(f"cache-from {entry_text}:"))
        channel = server.channel()
        _nothing_served(channel, actions)
        mine = [w for w in _warnings(server) if entry_text in w]
        assert len(mine) == 1 and re.search(case.message, mine[0]), mine
        report: Dict[str, object] = {"case": f"{case.name} ({case.where})"}
        _check_bounds(server, report)
        print(json.dumps(report))
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.GZIP])
def test_bigger_bombs(registry: RegistryServer, tmp_path: Path, compression: Compression, monkeypatch: pytest.MonkeyPatch) -> None:
    """The blob-level cases with bombs that inflate to 1 TiB (zstd, ~32 MiB) and 64 GiB
    (gzip, ~64 MiB)."""
    monkeypatch.setattr(__import__(__name__), "ZSTD_BOMB_BYTES", 1 << 40, raising=True)
    monkeypatch.setattr(__import__(__name__), "GZIP_BOMB_BYTES", 64 << 30, raising=True)
    test_hostile_ranges_are_refused_blob_by_blob_with_one_warning_each(registry, tmp_path, "registry", compression)
