"""Hand-made Actions and Commands for the explain tests (Pants- and Bazel-shaped)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from oci_cache.digests import Digest
from oci_cache.explain.actions import ActionView, action_view
from oci_cache.reapi import remote_execution_pb2 as re_pb2
from oci_cache.secret_masking.masked_values import MaskingKey

KEY = MaskingKey(b"k" * 32)


def command(
    arguments: Sequence[str],
    env: Optional[Dict[str, str]] = None,
    *,
    output_files: Sequence[str] = (),
    output_directories: Sequence[str] = (),
    output_paths: Sequence[str] = (),
    platform: Sequence[Tuple[str, str]] = (),
    working_directory: str = "",
) -> re_pb2.Command:
    message = re_pb2.Command(
        arguments=list(arguments),
        output_files=list(output_files),
        output_directories=list(output_directories),
        output_paths=list(output_paths),
        working_directory=working_directory,
    )
    for name, value in sorted((env or {}).items()):
        message.environment_variables.add(name=name, value=value)
    for name, value in platform:
        message.platform.properties.add(name=name, value=value)
    return message


def view(
    cmd: re_pb2.Command,
    *,
    input_root: bytes = b"root",
    timeout_seconds: Optional[int] = None,
    action_platform: Sequence[Tuple[str, str]] = (),
    source: str = "local",
    input_files: Optional[Dict[str, str]] = None,
    key: MaskingKey = KEY,
) -> ActionView:
    command_bytes = cmd.SerializeToString()
    action = re_pb2.Action(
        command_digest=Digest.of(command_bytes).to_proto(),
        input_root_digest=Digest.of(input_root).to_proto(),
    )
    if timeout_seconds is not None:
        action.timeout.seconds = timeout_seconds
    for name, value in action_platform:
        action.platform.properties.add(name=name, value=value)
    return action_view(action, Digest.of(action.SerializeToString()), cmd, key, source=source, input_files=input_files)


def pants_pytest(target: str, extra_env: Optional[Dict[str, str]] = None, path: str = "/usr/bin:/bin") -> re_pb2.Command:
    """Shaped like the Command Pants 2.17 sends for `Run Pytest - TARGET`."""
    env = {"PATH": path, "PEX_EXTRA_SYS_PATH": "src/py", "PYTEST_ADDOPTS": "--color=yes", **(extra_env or {})}
    return command(
        ["./pytest_runner.pex_pex_shim.sh", "--no-header", "-p", "no:cacheprovider", target],
        env,
        output_files=[".coverage"],
        output_directories=["extra-output"],
    )


def bazel_genrule(out: str, script: str, cpu: str = "k8") -> re_pb2.Command:
    """Shaped like a Bazel 4 genrule Command: bash -c, output_files and output_paths
    both set, platform properties, a working directory."""
    return command(
        ["/bin/bash", "-c", script],
        {"PATH": "/bin:/usr/bin:/usr/local/bin"},
        output_files=[f"bazel-out/{cpu}-fastbuild/bin/{out}"],
        output_paths=[f"bazel-out/{cpu}-fastbuild/bin/{out}"],
        platform=[("OSFamily", "linux"), ("container-image", "docker://gcr.io/x@sha256:1")],
        working_directory="",
    )


def digest_text(data: bytes) -> str:
    return str(Digest.of(data))
