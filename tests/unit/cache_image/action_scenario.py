"""Realistic action-cache contents for the import/export tests: an Action and its
Command, output files, an output directory (a Tree with a child directory) and
stdout, written into a store the way a REAPI client does. (Imported by name:
several conftest.py files exist in tests/.)"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2 as re_pb2


def payload(seed: int, size: int) -> bytes:
    """Half text, half random bytes: compressible, but not trivially."""
    rng = random.Random(seed)
    text = (b"output %d line of text for the cache tests\n" % seed) * (size // 40 + 1)
    mixed = bytearray(rng.getrandbits(8 * size).to_bytes(size, "little") if size else b"")
    mixed[1::2] = text[1:size:2]
    return bytes(mixed)


@dataclass
class RecordedAction:
    action: Digest
    result: bytes
    exit_code: int
    outputs: Dict[Digest, bytes] = field(default_factory=dict)
    """Every blob a hit needs (files, tree, tree files, stdout)."""
    definitions: Dict[Digest, bytes] = field(default_factory=dict)
    """The Action and Command protos (exported by mode=max only)."""


def _digest_proto(data: bytes) -> re_pb2.Digest:
    return Digest.of(data).to_proto()


def make_action(
    seed: int, *, exit_code: int = 0, file_sizes=(100, 5000), tree_file_sizes=(300, 70_000)
) -> RecordedAction:
    """An action with output files, one output directory and stdout (nothing stored yet)."""
    outputs: Dict[Digest, bytes] = {}
    result = re_pb2.ActionResult(exit_code=exit_code)
    for number, size in enumerate(file_sizes):
        data = payload(seed * 1000 + number, size)
        outputs[Digest.of(data)] = data
        result.output_files.add(path=f"out/file{number}.bin", digest=_digest_proto(data))
    if tree_file_sizes:
        child = re_pb2.Directory()
        root = re_pb2.Directory()
        for number, size in enumerate(tree_file_sizes):
            data = payload(seed * 1000 + 500 + number, size)
            outputs[Digest.of(data)] = data
            holder = root if number % 2 == 0 else child
            holder.files.add(name=f"f{number}", digest=_digest_proto(data))
        child_bytes = child.SerializeToString()
        root.directories.add(name="sub", digest=_digest_proto(child_bytes))
        tree = re_pb2.Tree(root=root, children=[child]).SerializeToString()
        outputs[Digest.of(tree)] = tree
        result.output_directories.add(path="out/dir", tree_digest=_digest_proto(tree))
    stdout = b"stdout of action %d\n" % seed
    outputs[Digest.of(stdout)] = stdout
    result.stdout_digest.CopyFrom(_digest_proto(stdout))
    command = re_pb2.Command(arguments=["tool", f"--seed={seed}"]).SerializeToString()
    action = re_pb2.Action(
        command_digest=_digest_proto(command), input_root_digest=_digest_proto(b"")
    ).SerializeToString()
    return RecordedAction(
        action=Digest.of(action),
        result=result.SerializeToString(),
        exit_code=exit_code,
        outputs=outputs,
        definitions={Digest.of(command): command, Digest.of(action): action},
    )


def store_action(store: object, recorded: RecordedAction) -> None:
    """Uploads the blobs then the result, like a client after running the action."""
    for digest, data in {**recorded.definitions, **recorded.outputs}.items():
        store.put_bytes(digest, data)  # type: ignore[attr-defined]
    store.put_action_result(recorded.action, recorded.result)  # type: ignore[attr-defined]


def record_actions(store: object, seeds: List[int], failing: Optional[List[int]] = None) -> List[RecordedAction]:
    failing = failing or []
    actions = [make_action(seed, exit_code=1 if seed in failing else 0) for seed in seeds]
    for recorded in actions:
        store_action(store, recorded)
    return actions
