"""Manifest, config and index layer: build and parse in every form, validation,
versioning, and the 256 KiB manifest budget."""

from __future__ import annotations

import json
import subprocess
import shutil
from pathlib import Path
from typing import List, Tuple

import pytest

from oci_cache.digests import Digest
from oci_cache.image_format import manifest as mf
from oci_cache.image_format.compression import Compression
from oci_cache.image_format.entry_index import decode_index, encode_index
from oci_cache.image_format.errors import ImageFormatError, UnsupportedFormatVersionError
from oci_cache.image_format.layer_writer import WrittenLayer, write_layer
from oci_cache.image_format.manifest import CacheConfig, CacheImage, Descriptor

HEX = "ab" * 32


def _layers(tmp_path: Path) -> List[WrittenLayer]:
    written = []
    for number, compression in enumerate(Compression):
        content = b"blob %d " % number * 100
        written.append(write_layer(str(tmp_path / compression.value), [(Digest.of(content), content)], compression))
    return written


def _image(tmp_path: Path, oci: bool = True) -> Tuple[CacheImage, CacheConfig, bytes]:
    layers = _layers(tmp_path)
    descriptors = tuple(mf.layer_descriptor(layer, oci_mediatypes=oci) for layer in layers)
    index_blob = encode_index([layer.digest for layer in layers], [], [])
    index_layer, index_descriptor = mf.build_index_layer(index_blob, oci_mediatypes=oci)
    config = CacheConfig(
        created=mf.format_timestamp(1_700_000_000),
        mode="max",
        compression=Compression.ZSTD,
        index=index_descriptor,
        layer_count=len(descriptors),
        blob_count=len(layers),
        action_count=0,
        blob_bytes=sum(layer.entries[0].digest.size_bytes for layer in layers),
    )
    return CacheImage(config.descriptor(), descriptors, index_descriptor), config, index_layer


@pytest.mark.parametrize("oci", [True, False])
@pytest.mark.parametrize("image_manifest", [True, False])
def test_build_and_parse_every_form(tmp_path: Path, oci: bool, image_manifest: bool) -> None:
    image, config, _ = _image(tmp_path, oci)
    data, media_type = mf.build_manifest(image, created=config.created, oci_mediatypes=oci, image_manifest=image_manifest)
    expected_type = {
        (True, True): mf.OCI_MANIFEST,
        (False, True): mf.DOCKER_MANIFEST,
        (True, False): mf.OCI_INDEX,
        (False, False): mf.DOCKER_MANIFEST_LIST,
    }[(oci, image_manifest)]
    assert media_type == expected_type
    document = json.loads(data)
    assert document["mediaType"] == expected_type and document["schemaVersion"] == 2
    assert ("artifactType" in document) == oci
    assert ("annotations" in document) == oci, "Docker manifests have no top-level annotations"
    parsed = mf.parse_manifest(data, media_type)
    assert (parsed.oci_mediatypes, parsed.image_manifest) == (oci, image_manifest)
    assert parsed.config == image.config
    assert parsed.layers == image.all_layers
    resolved = mf.resolve_image(parsed, mf.parse_config(config.to_bytes()))
    assert resolved == image
    assert [mf.layer_compression(layer) for layer in resolved.layers] == list(Compression)


def test_oci_manifest_shape(tmp_path: Path) -> None:
    image, config, _ = _image(tmp_path)
    document = json.loads(mf.build_manifest(image, created=config.created)[0])
    assert list(document) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "annotations"]
    assert document["artifactType"] == "application/vnd.dev.pants-oci-cache.cache.v1"
    assert document["config"]["mediaType"] == "application/vnd.dev.pants-oci-cache.config.v1+json"
    assert [layer["mediaType"] for layer in document["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar",
    ]
    assert all(layer["annotations"]["containerd.io/uncompressed"].startswith("sha256:") for layer in document["layers"])
    assert document["layers"][-1]["annotations"]["dev.pants-oci-cache.role"] == "index"
    assert document["annotations"] == {"dev.pants-oci-cache.format": "1.1", "org.opencontainers.image.created": config.created}


def test_docker_media_types(tmp_path: Path) -> None:
    image, _, _ = _image(tmp_path, oci=False)
    document = json.loads(mf.build_manifest(image, oci_mediatypes=False)[0])
    assert [layer["mediaType"] for layer in document["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
    ]


def test_legacy_index_lists_layers_then_config(tmp_path: Path) -> None:
    image, _, _ = _image(tmp_path)
    document = json.loads(mf.build_manifest(image, image_manifest=False)[0])
    assert [d["digest"] for d in document["manifests"]] == [d.digest for d in image.all_layers] + [image.config.digest]


def test_config_round_trip_and_shape(tmp_path: Path) -> None:
    _, config, _ = _image(tmp_path)
    data = config.to_bytes()
    assert mf.parse_config(data) == config
    document = json.loads(data)
    assert document["format"] == "pants-oci-cache" and document["formatVersion"] == "1.1"
    assert document["counts"] == {"layers": 4, "blobs": 4, "actions": 0, "blobBytes": config.blob_bytes}
    assert config.descriptor().size == len(data)


def _config_with(config: CacheConfig, **changes: object) -> bytes:
    document = json.loads(config.to_bytes())
    document.update(changes)
    return json.dumps(document).encode()


def test_newer_major_config_is_refused_clearly_and_newer_minor_is_read(tmp_path: Path) -> None:
    _, config, _ = _image(tmp_path)
    with pytest.raises(UnsupportedFormatVersionError, match=r"format version 2\.3, newer.*upgrade pants-oci-cache"):
        mf.parse_config(_config_with(config, formatVersion="2.3"))
    newer_minor = mf.parse_config(_config_with(config, formatVersion="1.9", futureField={"x": 1}))
    assert newer_minor.format_version == (1, 9)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "buildkit"}, "not a pants-oci-cache config"),
        ({"formatVersion": "one"}, "invalid formatVersion"),
        ({"formatVersion": "0.9"}, "unknown cache image format version 0.9"),
        ({"mode": "all"}, "invalid mode"),
        ({"compression": "lz4"}, "compression must be one of"),
        ({"counts": {"layers": -1, "blobs": 0, "actions": 0, "blobBytes": 0}}, "invalid count layers"),
        ({"counts": {"layers": True, "blobs": 0, "actions": 0, "blobBytes": 0}}, "invalid count layers"),
        ({"index": {"mediaType": "x", "digest": "sha256:12", "size": 1}}, "invalid digest"),
        ({"created": 5}, "invalid created"),
    ],
)
def test_invalid_configs_are_refused(tmp_path: Path, changes: dict, message: str) -> None:
    _, config, _ = _image(tmp_path)
    with pytest.raises(ImageFormatError, match=message):
        mf.parse_config(_config_with(config, **changes))


def test_oversized_or_non_json_documents_are_refused() -> None:
    with pytest.raises(ImageFormatError, match="exceeds"):
        mf.parse_config(b" " * ((1 << 20) + 1))
    with pytest.raises(ImageFormatError, match="not valid JSON"):
        mf.parse_config(b"\xff{")
    with pytest.raises(ImageFormatError, match="exceeds"):
        mf.parse_manifest(b" " * ((4 << 20) + 1))
    with pytest.raises(ImageFormatError, match="not a JSON object"):
        mf.parse_manifest(b"[1]")


def _manifest_with(tmp_path: Path, mutate) -> bytes:  # type: ignore[no-untyped-def]
    image, _, _ = _image(tmp_path)
    document = json.loads(mf.build_manifest(image)[0])
    mutate(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schemaVersion=1), "schemaVersion"),
        (lambda d: d.update(mediaType="application/vnd.oci.artifact.manifest.v1+json"), "unsupported manifest media type"),
        (lambda d: d.update(artifactType="application/vnd.other"), "artifactType"),
        (lambda d: d["config"].update(mediaType="application/vnd.oci.image.config.v1+json"), "config media type"),
        (lambda d: d["layers"][0].update(digest="sha512:" + "a" * 128), "invalid digest"),
        (lambda d: d["layers"][0].update(digest="sha256:" + "A" * 64), "invalid digest"),
        (lambda d: d["layers"][0].update(size=-1), "invalid size"),
        (lambda d: d["layers"][0].update(size="12"), "invalid size"),
        (lambda d: d["layers"][0].update(size=1.5), "invalid size"),
        (lambda d: d["layers"][0].update(annotations={"a": 1}), "invalid annotations"),
        (lambda d: d["layers"][0].pop("mediaType"), "no valid mediaType"),
        (lambda d: d.update(layers=[]), "no layers"),
        (lambda d: d.update(layers={}), "no list"),
        (lambda d: d.update(layers=[d["layers"][0]] * 10001), "more than 10000"),
        (lambda d: d.pop("config"), "manifest config is not a JSON object"),
    ],
)
def test_invalid_manifests_are_refused(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageFormatError, match=message):
        mf.parse_manifest(_manifest_with(tmp_path, mutate))


def test_content_type_must_agree_with_the_document(tmp_path: Path) -> None:
    image, _, _ = _image(tmp_path)
    data, _ = mf.build_manifest(image)
    with pytest.raises(ImageFormatError, match="served as"):
        mf.parse_manifest(data, mf.DOCKER_MANIFEST)
    document = json.loads(data)
    del document["mediaType"]
    parsed = mf.parse_manifest(json.dumps(document).encode(), mf.OCI_MANIFEST)
    assert parsed.media_type == mf.OCI_MANIFEST


def test_resolve_checks_that_config_and_manifest_agree(tmp_path: Path) -> None:
    image, config, _ = _image(tmp_path)
    parsed = mf.parse_manifest(mf.build_manifest(image)[0])
    wrong_index = CacheConfig(**{**config.__dict__, "index": Descriptor("x", "sha256:" + HEX, 5)})
    with pytest.raises(ImageFormatError, match="not the manifest's last layer"):
        mf.resolve_image(parsed, wrong_index)
    wrong_count = CacheConfig(**{**config.__dict__, "layer_count": 3})
    with pytest.raises(ImageFormatError, match="4 data layers, the config says 3"):
        mf.resolve_image(parsed, wrong_count)
    odd_layer = CacheImage(image.config, (Descriptor("application/x-unknown", "sha256:" + HEX, 1),) + image.layers[1:], image.index)
    with pytest.raises(ImageFormatError, match="unsupported media type"):
        mf.resolve_image(mf.parse_manifest(mf.build_manifest(odd_layer)[0]), config)


def test_index_layer_round_trip_and_strictness(tmp_path: Path) -> None:
    index_blob = encode_index([], [], [])
    layer, descriptor = mf.build_index_layer(index_blob)
    assert descriptor == Descriptor.of("application/vnd.oci.image.layer.v1.tar", layer, descriptor.annotations)
    assert descriptor.annotations["containerd.io/uncompressed"] == descriptor.digest
    assert decode_index(mf.read_index_layer(layer)).blob_count == 0
    with pytest.raises(ImageFormatError, match="implies"):
        mf.read_index_layer(layer + bytes(512))
    with pytest.raises(ImageFormatError):
        mf.read_index_layer(layer[:-1])
    other = write_layer(str(tmp_path / "l"), [(Digest.of(b"x"), b"x")], Compression.UNCOMPRESSED)
    with pytest.raises(ImageFormatError, match="does not hold pants-oci-cache/index"):
        mf.read_index_layer(Path(other.path).read_bytes())
    if shutil.which("tar"):
        path = tmp_path / "index.tar"
        path.write_bytes(layer)
        listing = subprocess.run(["tar", "-tvf", str(path)], capture_output=True, text=True, check=True).stdout
        assert "pants-oci-cache/index" in listing


def test_docker_and_oci_descriptors_convert(tmp_path: Path) -> None:
    image, _, _ = _image(tmp_path)
    for layer in image.layers:
        docker = mf.with_media_types(layer, oci_mediatypes=False)
        assert docker.media_type.startswith("application/vnd.docker.image.rootfs.diff.tar")
        assert mf.with_media_types(docker, oci_mediatypes=True) == layer
        assert mf.layer_compression(docker) == mf.layer_compression(layer)


def _budget_layers(compression: Compression, oci: bool) -> int:
    """How many data layers fit in the manifest budget."""
    annotations = {mf.UNCOMPRESSED_DIGEST_ANNOTATION: "sha256:" + HEX}
    if compression is Compression.ESTARGZ:
        annotations["containerd.io/snapshot/stargz/toc.digest"] = "sha256:" + HEX
        annotations["io.containers.estargz.uncompressed-size"] = str(10**12)
    layer = Descriptor(mf.layer_media_type(compression, oci_mediatypes=oci), "sha256:" + HEX, 10**11, annotations)
    index = mf.build_index_layer(b"x")[1]
    config = Descriptor(mf.CONFIG_MEDIA_TYPE, "sha256:" + HEX, 700)
    low, high = 1, 100_000
    while low < high:
        middle = (low + high + 1) // 2
        try:
            mf.build_manifest(CacheImage(config, (layer,) * middle, index), created="2024-01-01T00:00:00Z", oci_mediatypes=oci)
            low = middle
        except ImageFormatError:
            high = middle - 1
    return low


@pytest.mark.parametrize(
    "compression, oci, at_least",
    [
        (Compression.ZSTD, True, 900),
        (Compression.GZIP, True, 900),
        (Compression.UNCOMPRESSED, True, 900),
        (Compression.ESTARGZ, True, 550),
        (Compression.ZSTD, False, 900),
    ],
)
def test_manifest_budget_holds_hundreds_of_layers(compression: Compression, oci: bool, at_least: int) -> None:
    fitting = _budget_layers(compression, oci)
    print(f"\n{compression.value} oci={oci}: {fitting} layers fit in {mf.MANIFEST_SIZE_LIMIT} bytes")
    assert fitting >= at_least


def test_a_manifest_over_budget_is_refused(tmp_path: Path) -> None:
    image, _, _ = _image(tmp_path)
    many = CacheImage(image.config, image.layers * 400, image.index)
    with pytest.raises(ImageFormatError, match="merge layers"):
        mf.build_manifest(many)
