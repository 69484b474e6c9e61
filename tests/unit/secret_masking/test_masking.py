"""Masked values and command records: secrets are masked with a local key, the masks
compare across runs, and a record holds what mode=max needs and no secret
(oci_cache.secret_masking.masked_values / command_records)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.secret_masking import (
    MASKED_PATTERN,
    CommandRecordError,
    MaskingKey,
    command_holds_secrets,
    is_masked,
    load_or_create_masking_key,
    mask_value,
    parse_command_record,
    record_command,
)

TOKEN = "tok-9f8e7d6c5b4a"


def _command(
    arguments: Sequence[str],
    env: Sequence[Tuple[str, str]] = (),
    platform: Sequence[Tuple[str, str]] = (),
    output_paths: Sequence[str] = ("out.txt",),
    working_directory: str = "",
) -> Tuple[re_pb2.Command, Digest]:
    command = re_pb2.Command(arguments=list(arguments), output_paths=list(output_paths))
    for name, value in env:
        command.environment_variables.add(name=name, value=value)
    for name, value in platform:
        command.platform.properties.add(name=name, value=value)
    command.working_directory = working_directory
    data = command.SerializeToString(deterministic=True)
    return command, Digest.of(data)


@pytest.fixture
def key() -> MaskingKey:
    return MaskingKey(b"k" * 32)


# ---- masked values ------------------------------------------------------------------


def test_a_masked_value_is_printable_stable_and_never_holds_the_value(key: MaskingKey) -> None:
    masked = mask_value(TOKEN, key)
    assert is_masked(masked) and MASKED_PATTERN.fullmatch(masked)
    assert masked == mask_value(TOKEN, MaskingKey(b"k" * 32))
    assert TOKEN not in masked and masked.startswith("<masked:hmac:")


def test_masks_differ_per_value_and_per_key(key: MaskingKey) -> None:
    assert mask_value("a", key) != mask_value("b", key)
    assert mask_value("a", key) != mask_value("a", MaskingKey(b"j" * 32))
    assert key.key_id != MaskingKey(b"j" * 32).key_id
    assert key.key_id == MaskingKey(b"k" * 32).key_id


def test_a_key_shorter_than_16_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        MaskingKey(b"short")


def test_the_key_file_is_created_private_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secret-masking.key"
    first = load_or_create_masking_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_masking_key(path) == first
    assert mask_value("x", load_or_create_masking_key(path)) == mask_value("x", first)
    assert [p.name for p in path.parent.iterdir()] == ["secret-masking.key"]


def test_processes_creating_the_key_together_end_up_with_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret-masking.key"
    keys: List[MaskingKey] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_masking_key(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({k.secret for k in keys}) == 1 and len(keys) == 8


def test_a_truncated_key_file_is_an_error_not_a_weak_key(tmp_path: Path) -> None:
    path = tmp_path / "secret-masking.key"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError, match="too few"):
        load_or_create_masking_key(path)


# ---- command records ----------------------------------------------------------------


def test_a_secret_variable_is_masked_and_its_value_is_nowhere_in_the_record(key: MaskingKey) -> None:
    command, digest = _command(
        ["/bin/bash", "-c", f"echo using {TOKEN} now"],
        env=[("DEMO_API_TOKEN", TOKEN), ("PATH", "/usr/bin:/bin")],
        output_paths=["out.txt", "dist"],
        working_directory="src",
    )
    record = record_command(command, digest, key)
    data = record.to_bytes()
    assert TOKEN.encode() not in data
    assert record.command == digest and record.masked_with == key.key_id
    env = record.environment_values()
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["DEMO_API_TOKEN"] == mask_value(TOKEN, key)
    assert record.arguments[2] == f"echo using {mask_value(TOKEN, key)} now"  # the pasted token is scrubbed
    assert record.masked_arguments == (2,)
    assert record.output_paths == ("out.txt", "dist") and record.working_directory == "src"
    assert record.masked_count == 2
    assert command_holds_secrets(command)


def test_masked_values_compare_between_two_records_of_the_same_key(key: MaskingKey) -> None:
    same_a, digest_a = _command(["run"], env=[("API_KEY", TOKEN), ("MODE", "a")])
    same_b, digest_b = _command(["run"], env=[("API_KEY", TOKEN), ("MODE", "b")])
    other, digest_c = _command(["run"], env=[("API_KEY", TOKEN + "x"), ("MODE", "a")])
    a, b, c = (record_command(cmd, d, key) for cmd, d in ((same_a, digest_a), (same_b, digest_b), (other, digest_c)))
    assert a.environment_values()["API_KEY"] == b.environment_values()["API_KEY"]
    assert a.environment_values()["API_KEY"] != c.environment_values()["API_KEY"]
    assert record_command(same_a, digest_a, MaskingKey(b"j" * 32)).environment_values()["API_KEY"] != (
        a.environment_values()["API_KEY"]
    )


def test_credential_arguments_are_masked_where_they_are(key: MaskingKey) -> None:
    command, digest = _command(
        [
            "deploy",
            "--password=hunter2",
            "--token",
            "abc123xyz",
            "--url",
            "https://bob:pa55w0rd@example.com/x",
            "-H",
            "Authorization: Bearer eyJabcdef",
        ],
    )
    record = record_command(command, digest, key)
    data = record.to_bytes()
    for secret in (b"hunter2", b"abc123xyz", b"bob:pa55w0rd", b"eyJabcdef"):
        assert secret not in data
    assert record.arguments[0] == "deploy" and record.arguments[2] == "--token"
    assert record.arguments[1] == "--password=" + mask_value("hunter2", key)
    assert record.arguments[5] == f"https://{mask_value('bob:pa55w0rd', key)}@example.com/x"
    assert record.arguments[7] == "Authorization: Bearer " + mask_value("eyJabcdef", key)
    assert record.masked_arguments == (1, 3, 5, 7)


def test_user_listed_names_and_urls_in_values_are_masked(key: MaskingKey) -> None:
    command, digest = _command(
        ["run"],
        env=[("DATABASE_URL", "postgres://db/app"), ("PIP_INDEX_URL", "https://u:pw123@pypi.example/simple")],
        platform=[("container-image", "docker://robot:reg-pass@registry/image")],
    )
    assert not record_command(command, digest, key).environment_values()["DATABASE_URL"].startswith("<masked")
    record = record_command(command, digest, key, ["DATABASE_URL"])
    data = record.to_bytes()
    assert b"postgres://db/app" not in data and b"pw123" not in data and b"reg-pass" not in data
    assert record.environment_values()["PIP_INDEX_URL"] == f"https://{mask_value('u:pw123', key)}@pypi.example/simple"
    assert [entry.masked for entry in record.environment] == [True, True]


def test_a_clean_command_holds_no_secret_and_its_record_masks_nothing(key: MaskingKey) -> None:
    command, digest = _command(
        ["/usr/bin/python3", "-m", "pytest", "--color=yes", "tests/"],
        env=[("PATH", "/usr/bin"), ("PEX_ROOT", ".cache/pex_root"), ("EMPTY_TOKEN", "")],
    )
    assert not command_holds_secrets(command)
    record = record_command(command, digest, key)
    assert record.masked_count == 0 and record.arguments == tuple(command.arguments)
    assert record.environment_values()["EMPTY_TOKEN"] == ""


def test_a_bazel_style_command_with_platform_and_output_files_round_trips(key: MaskingKey) -> None:
    command, digest = _command(
        ["external/bazel_tools/tools/test/test-setup.sh", "pkg/test"],
        env=[("TEST_TMPDIR", "_tmp"), ("GITHUB_TOKEN", TOKEN)],
        platform=[("OSFamily", "Linux"), ("container-image", "docker://gcr.io/x")],
    )
    command.output_files.append("pkg/test.log")
    command.output_directories.append("pkg/test.outputs")
    command.output_node_properties.append("mtime")
    command.output_directory_format = re_pb2.Command.OutputDirectoryFormat.DIRECTORY_ONLY
    record = record_command(command, digest, key)
    parsed = parse_command_record(record.to_bytes())
    assert parsed == record
    assert parsed.platform == (("OSFamily", "Linux"), ("container-image", "docker://gcr.io/x"))
    assert parsed.output_files == ("pkg/test.log",) and parsed.output_node_properties == ("mtime",)
    assert parsed.output_directory_format == re_pb2.Command.OutputDirectoryFormat.DIRECTORY_ONLY
    assert record.to_bytes() == record_command(command, digest, key).to_bytes()  # deterministic


def test_a_short_secret_is_masked_where_it_is_named_but_not_hunted_elsewhere(key: MaskingKey) -> None:
    command, digest = _command(["echo", "abc"], env=[("PIN_PASS", "abc")])
    record = record_command(command, digest, key)
    assert record.environment_values()["PIN_PASS"] == mask_value("abc", key)
    assert record.arguments == ("echo", "abc")  # 3 characters: too short to scrub from other text


@pytest.mark.parametrize("data", [b"", b"{}", b'{"schema":"other"}', b"\x0a\x03run", b'{"schema":"pants-oci-cache/command-record/v1"}'])
def test_bytes_that_are_not_a_record_are_refused(data: bytes) -> None:
    with pytest.raises(CommandRecordError):
        parse_command_record(data)
