"""mode=max exports Commands that hold a secret as records, never in clear
(cache_image/secret_commands.py over a real local store and real OCI layouts)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
import zstandard

from action_scenario import RecordedAction, make_action, store_action
from image_secret_scan import files_holding, image_blobs
from oci_cache.cache_entries import parse_cache_from, parse_cache_to
from oci_cache.cache_image import load_cache_image, open_entry_target
from oci_cache.cache_image.exporter import UNCHANGED_MESSAGE, CacheExporter
from oci_cache.cache_image.serving_stack import honest_action_cache
from oci_cache.cache_image.importing_blob_store import ImportingBlobStore
from oci_cache.cache_image.imported_images import ImportSet
from oci_cache.cache_image.importer import CacheImporter
from oci_cache.cache_image.secret_commands import SecretCommandWithholding, default_masking_key_file
from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.secret_masking import MASKING_KEY_FILE, load_or_create_masking_key, mask_value, parse_command_record
from oci_cache.store.local_store import LocalStore

TOKEN = "tok-5ecret-value-42"
DB_URL = "postgres://db.internal/app"


def _action_with_command(seed: int, env: List[Tuple[str, str]], arguments: List[str]) -> Tuple[RecordedAction, Digest]:
    """make_action(seed) with its Command replaced by one with `env` and `arguments`."""
    recorded = make_action(seed, tree_file_sizes=())
    command = re_pb2.Command(arguments=arguments, output_paths=["out/file0.bin", "out/file1.bin"])
    for name, value in env:
        command.environment_variables.add(name=name, value=value)
    command_bytes = command.SerializeToString()
    action = re_pb2.Action(
        command_digest=Digest.of(command_bytes).to_proto(), input_root_digest=Digest.of(b"").to_proto()
    ).SerializeToString()
    recorded.action = Digest.of(action)
    recorded.definitions = {Digest.of(command_bytes): command_bytes, Digest.of(action): action}
    return recorded, Digest.of(command_bytes)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    opened = LocalStore(tmp_path / "state" / "store", 1 << 30)
    yield opened
    opened.close()


def _image_blobs(layout: Path) -> Dict[Digest, bytes]:
    """Every blob of the image at the layout's default tag, read from its layers."""
    return image_blobs(open_entry_target(parse_cache_from(f"type=local,src={layout}")))


def _exporter(tmp_path: Path, store: LocalStore, names: Tuple[str, ...] = ()) -> CacheExporter:
    state = tmp_path / "state"
    withholding = SecretCommandWithholding(state / MASKING_KEY_FILE, names)
    return CacheExporter(store, state / "export", confirm_delay=0, secret_commands=withholding)


@pytest.fixture
def scene(store: LocalStore) -> Dict[str, object]:
    secret, secret_command = _action_with_command(
        1, [("DEMO_API_TOKEN", TOKEN), ("PATH", "/usr/bin"), ("DATABASE_URL", DB_URL)], ["/bin/sh", "-c", "run"]
    )
    argv, argv_command = _action_with_command(2, [("PATH", "/usr/bin")], ["deploy", f"--password={TOKEN}"])
    clean, clean_command = _action_with_command(3, [("PATH", "/usr/bin")], ["/bin/echo", "hello"])
    for recorded in (secret, argv, clean):
        store_action(store, recorded)
    return {
        "secret": (secret, secret_command),
        "argv": (argv, argv_command),
        "clean": (clean, clean_command),
    }


def test_the_image_scanner_finds_a_secret_inside_zstd_frames_inside_a_tar(tmp_path: Path) -> None:
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        data = b"prefix " + TOKEN.encode() + b" suffix"
        info = tarfile.TarInfo("blob")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    raw = tar_bytes.getvalue()
    frames = zstandard.ZstdCompressor().compress(raw[:700]) + zstandard.ZstdCompressor().compress(raw[700:])
    (tmp_path / "layer").write_bytes(b"header" + frames)
    assert files_holding([tmp_path], TOKEN.encode()) == [str(tmp_path / "layer")]


def test_mode_max_exports_a_record_for_each_command_holding_a_secret_and_never_the_value(
    tmp_path: Path, store: LocalStore, scene: Dict[str, object]
) -> None:
    layout = tmp_path / "max"
    exporter = _exporter(tmp_path, store, ("DATABASE_URL",))
    report = exporter.export([parse_cache_to(f"type=local,dest={layout},mode=max")])
    assert report.ok, report
    assert files_holding([layout], TOKEN.encode()) == []
    assert files_holding([layout], DB_URL.encode()) == []
    blobs = _image_blobs(layout)
    index = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}"))).index
    key = load_or_create_masking_key(tmp_path / "state" / MASKING_KEY_FILE)
    for name in ("secret", "argv"):
        recorded, command = scene[name]  # type: ignore[misc]
        assert command not in blobs and index.find_blob(command) is None
        record_digest = index.find_command_record(command)
        assert record_digest is not None and record_digest in blobs
        record = parse_command_record(blobs[record_digest])
        assert record.command == command and record.masked_with == key.key_id
        assert recorded.action in blobs  # the Action stays; its Command is the record
        assert index.find_action(recorded.action) is not None
    secret_record = parse_command_record(blobs[index.find_command_record(scene["secret"][1])])  # type: ignore[index]
    env = secret_record.environment_values()
    assert env["DEMO_API_TOKEN"] == mask_value(TOKEN, key) and env["PATH"] == "/usr/bin"
    assert env["DATABASE_URL"] == mask_value(DB_URL, key)  # listed by the user
    argv_record = parse_command_record(blobs[index.find_command_record(scene["argv"][1])])  # type: ignore[index]
    assert argv_record.arguments == ("deploy", "--password=" + mask_value(TOKEN, key))
    clean_command = scene["clean"][1]  # type: ignore[index]
    assert clean_command in blobs and index.find_command_record(clean_command) is None
    assert index.command_record_count == 2


def test_a_second_export_finds_the_image_unchanged_and_reads_no_command_again(
    tmp_path: Path, store: LocalStore, scene: Dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = tmp_path / "max"
    entry = parse_cache_to(f"type=local,dest={layout},mode=max")
    exporter = _exporter(tmp_path, store)
    assert exporter.export([entry]).ok
    fresh = _exporter(tmp_path, store)  # a new daemon: nothing remembered in memory
    opened: List[Digest] = []
    real_open = store.open_blob
    monkeypatch.setattr(store, "open_blob", lambda digest: opened.append(digest) or real_open(digest))
    second = fresh.export_entry(entry)
    third = fresh.export_entry(entry)  # the settled fast path
    assert second.ok and second.message == UNCHANGED_MESSAGE and third.message == UNCHANGED_MESSAGE
    commands = {scene[name][1] for name in ("secret", "argv")}  # type: ignore[index]
    assert not commands & set(opened)


def test_mode_min_exports_no_command_and_no_record(tmp_path: Path, store: LocalStore, scene: Dict[str, object]) -> None:
    layout = tmp_path / "min"
    assert _exporter(tmp_path, store).export([parse_cache_to(f"type=local,dest={layout}")]).ok
    assert files_holding([layout], TOKEN.encode()) == []
    blobs = _image_blobs(layout)
    index = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}"))).index
    assert index.command_record_count == 0
    assert not any(scene[name][1] in blobs for name in ("secret", "argv", "clean"))  # type: ignore[index]
    assert index.action_count == 3


def test_an_action_whose_command_was_left_out_is_still_an_honest_hit(tmp_path: Path, store: LocalStore, scene: Dict[str, object]) -> None:
    layout = tmp_path / "max"
    assert _exporter(tmp_path, store).export([parse_cache_to(f"type=local,dest={layout},mode=max")]).ok
    local = LocalStore(tmp_path / "fresh", 1 << 30)
    imports = ImportSet(expected=1)
    importer = CacheImporter([parse_cache_from(f"type=local,src={layout}")], imports, refresh_seconds=0)
    blobs = ImportingBlobStore(local, imports)
    try:
        importer.import_all()
        actions = honest_action_cache(local, blobs, imports)
        recorded, command = scene["secret"]  # type: ignore[misc]
        assert actions.get_action_result(recorded.action) == recorded.result
        assert blobs.find_missing([command]) == [command]  # the client uploads it again, to the local store
    finally:
        importer.close()
        blobs.close()
        local.close()


def test_names_from_the_entry_add_to_the_daemon_s_names(tmp_path: Path, store: LocalStore, scene: Dict[str, object]) -> None:
    layout = tmp_path / "max"
    report = _exporter(tmp_path, store).export([parse_cache_to(f"type=local,dest={layout},mode=max,secret-env=database_url")])
    assert report.ok
    assert files_holding([layout], DB_URL.encode()) == []


def test_the_key_file_is_the_state_dir_s_or_the_one_above_a_daemon_directory(tmp_path: Path) -> None:
    daemon_dir = tmp_path / "state" / "repo-0123"
    daemon_dir.mkdir(parents=True)
    assert default_masking_key_file(daemon_dir) == daemon_dir / MASKING_KEY_FILE
    load_or_create_masking_key(tmp_path / "state" / MASKING_KEY_FILE)
    assert default_masking_key_file(daemon_dir) == tmp_path / "state" / MASKING_KEY_FILE


def test_an_unusable_key_file_masks_with_a_key_for_this_process_never_in_clear(tmp_path: Path, store: LocalStore) -> None:
    recorded, command = _action_with_command(4, [("API_KEY", TOKEN)], ["run"])
    store_action(store, recorded)
    (tmp_path / "key-is-a-dir").mkdir()
    (tmp_path / "key-is-a-dir" / "x").write_text("")
    exporter = CacheExporter(
        store, tmp_path / "export", confirm_delay=0, secret_commands=SecretCommandWithholding(tmp_path / "key-is-a-dir")
    )
    layout = tmp_path / "max"
    assert exporter.export([parse_cache_to(f"type=local,dest={layout},mode=max")]).ok
    assert files_holding([layout], TOKEN.encode()) == []
    index = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}"))).index
    assert index.find_command_record(command) is not None


def test_a_direct_export_of_a_state_dir_masks_what_its_daemon_masked(tmp_path: Path) -> None:
    from oci_cache.cache_image.secret_commands import remember_secret_settings, remembered_withholding
    from oci_cache.cli.export_direct import export_state_dir

    state = tmp_path / "daemon-dir"
    key_file = tmp_path / "elsewhere" / "the.key"
    remember_secret_settings(state / "export", SecretCommandWithholding(key_file, ("*_DSN",)))
    recalled = remembered_withholding(state, state / "export")
    assert recalled.key_file == key_file and recalled.extra_names == ("*_DSN",)
    assert remembered_withholding(tmp_path / "none", tmp_path / "none" / "export").extra_names == ()

    store = LocalStore(state / "store", 1 << 30)
    recorded, command = _action_with_command(5, [("SENTRY_DSN", DB_URL)], ["run"])
    store_action(store, recorded)
    store.close()
    layout = tmp_path / "max"
    report = export_state_dir(state, [parse_cache_to(f"type=local,dest={layout},mode=max")])
    assert report.ok, report
    assert files_holding([layout], DB_URL.encode()) == []
    record = load_cache_image(open_entry_target(parse_cache_from(f"type=local,src={layout}"))).index.find_command_record(
        command
    )
    assert record is not None
    assert parse_command_record(_image_blobs(layout)[record]).masked_with == load_or_create_masking_key(key_file).key_id
