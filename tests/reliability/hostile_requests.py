"""A seeded generator of hostile requests for the server's gRPC surface.

    corpus = Corpus.build(seed)          # blobs, a tree and action results to preload
    case = generate_case(seed, index, corpus)

Case `index` of seed `seed` is always the same case (its random source is
`random.Random(f"{seed}:{index}")`), whatever order cases run in, so a failing
case is reproduced by its (seed, index) alone. Each case is a list of serialized
request messages (or raw bytes that are not a message at all) for one RPC, with
the status codes that answer is allowed to have and, for an OK answer, a check
of what came back (so that a wrong byte served is a failure, not just a status).

The codes are those REAPI / google.bytestream specify for the input; where the
specs leave a choice (e.g. a negative read_offset of a missing blob: NOT_FOUND or
OUT_OF_RANGE) the case allows each reasonable answer. No case ever allows UNKNOWN,
INTERNAL or UNAVAILABLE: those mean a handler failed in a way it did not plan for.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import grpc
import zstandard

from oci_cache.reapi import bytestream_pb2
from oci_cache.reapi import remote_execution_pb2 as re_pb2

Code = grpc.StatusCode  # (values only; annotations say grpc.StatusCode)
OK = Code.OK
NOT_FOUND = Code.NOT_FOUND
INVALID = Code.INVALID_ARGUMENT
OUT_OF_RANGE = Code.OUT_OF_RANGE
EXHAUSTED = Code.RESOURCE_EXHAUSTED
PRECONDITION = Code.FAILED_PRECONDITION
CANCELLED = Code.CANCELLED
DEADLINE = Code.DEADLINE_EXCEEDED
UNIMPLEMENTED = Code.UNIMPLEMENTED

# What SPEC §3 and REAPI allow the server to answer a request with (no token configured).
SPEC_CODES: FrozenSet[grpc.StatusCode] = frozenset({OK, NOT_FOUND, INVALID, OUT_OF_RANGE, EXHAUSTED, PRECONDITION})
# Only where the client itself cancels or sets a deadline it cannot meet.
CLIENT_SIDE_CODES: FrozenSet[grpc.StatusCode] = frozenset({CANCELLED, DEADLINE})
NEVER_CODES: FrozenSet[grpc.StatusCode] = frozenset({Code.UNKNOWN, Code.INTERNAL, Code.UNAVAILABLE, Code.DATA_LOSS})

# The server's limits (grpc_server.py): 4 MiB batches, + 1 MiB receive headroom.
MAX_BATCH_BYTES = 4 * 1024 * 1024
RECEIVE_LIMIT_BYTES = MAX_BATCH_BYTES + 1024 * 1024

RE = "/build.bazel.remote.execution.v2."
CAPABILITIES = RE + "Capabilities/GetCapabilities"
GET_ACTION_RESULT = RE + "ActionCache/GetActionResult"
UPDATE_ACTION_RESULT = RE + "ActionCache/UpdateActionResult"
FIND_MISSING = RE + "ContentAddressableStorage/FindMissingBlobs"
BATCH_UPDATE = RE + "ContentAddressableStorage/BatchUpdateBlobs"
BATCH_READ = RE + "ContentAddressableStorage/BatchReadBlobs"
GET_TREE = RE + "ContentAddressableStorage/GetTree"
READ = "/google.bytestream.ByteStream/Read"
WRITE = "/google.bytestream.ByteStream/Write"
QUERY_WRITE_STATUS = "/google.bytestream.ByteStream/QueryWriteStatus"

UNARY = "unary"
SERVER_STREAM = "server_stream"
CLIENT_STREAM = "client_stream"

SHAPES: Dict[str, str] = {
    CAPABILITIES: UNARY,
    GET_ACTION_RESULT: UNARY,
    UPDATE_ACTION_RESULT: UNARY,
    FIND_MISSING: UNARY,
    BATCH_UPDATE: UNARY,
    BATCH_READ: UNARY,
    GET_TREE: SERVER_STREAM,
    READ: SERVER_STREAM,
    WRITE: CLIENT_STREAM,
    QUERY_WRITE_STATUS: UNARY,
}

# A check of an OK answer: gets the serialized responses, returns a problem or None.
Check = Callable[[List[bytes]], Optional[str]]


@dataclass
class FuzzCase:
    seed: int
    index: int
    kind: str
    method: str
    requests: List[bytes]
    allowed: FrozenSet[grpc.StatusCode]
    check: Optional[Check] = None
    metadata: Tuple[Tuple[str, object], ...] = ()
    timeout: float = 15.0
    # Client streams: cancel the call after sending this many messages (a truncated stream).
    # Server streams: cancel after receiving this many responses.
    cancel_after: Optional[int] = None
    # A blob this case writes and expects stored once the answer is OK (checked at the end).
    acknowledged_blob: Optional[bytes] = None

    @property
    def shape(self) -> str:
        return SHAPES.get(self.method, UNARY)

    @property
    def label(self) -> str:
        return f"seed={self.seed} case={self.index} {self.kind} {self.method}"


_KNOWN_HASHES: Dict[bytes, str] = {}


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256; corpus blobs (hashed again and again) come from a cache."""
    known = _KNOWN_HASHES.get(data) if len(data) > 256 else None
    return known if known is not None else hashlib.sha256(data).hexdigest()


def digest_of(data: bytes) -> re_pb2.Digest:
    return re_pb2.Digest(hash=sha256_hex(data), size_bytes=len(data))


EMPTY = digest_of(b"")


# --- what the server holds before fuzzing ------------------------------------------------


@dataclass
class Corpus:
    """Blobs, a directory tree and action results preloaded into the server."""

    blobs: Dict[str, bytes]  # hash -> bytes (every one stored)
    tree_root: re_pb2.Digest
    tree_directories: List[bytes]  # every Directory of the tree, serialized
    not_a_directory: re_pb2.Digest  # a stored blob that is no Directory message
    actions: Dict[str, Tuple[int, bytes]]  # action hash -> (action size, serialized ActionResult): hits
    incomplete_action: re_pb2.Digest  # its result names a blob that is not stored: a miss
    incomplete_result: bytes
    bomb: bytes = b""  # zstd frames that inflate to BOMB_BYTES of zeros

    BLOB_SIZES = (1, 2, 17, 1000, 65_537, 300_000, 1_500_000)
    BOMB_BYTES = 1 << 30

    @classmethod
    def build(cls, seed: int) -> "Corpus":
        rng = random.Random(f"corpus:{seed}")
        blobs: Dict[str, bytes] = {}
        for size in cls.BLOB_SIZES:
            data = rng.randbytes(size) if hasattr(rng, "randbytes") else bytes(rng.getrandbits(8) for _ in range(size))
            blobs[sha256_hex(data)] = data
        small = [d for d in blobs.values() if len(d) < 2000]
        leaf = re_pb2.Directory(files=[re_pb2.FileNode(name=f"f{i}", digest=digest_of(d)) for i, d in enumerate(small)])
        leaf_bytes = leaf.SerializeToString()
        root = re_pb2.Directory(
            files=[re_pb2.FileNode(name="big", digest=digest_of(max(blobs.values(), key=len)), is_executable=True)],
            directories=[re_pb2.DirectoryNode(name="sub", digest=digest_of(leaf_bytes))],
            symlinks=[re_pb2.SymlinkNode(name="link", target="../../etc/passwd")],
        )
        root_bytes = root.SerializeToString()
        for data in (leaf_bytes, root_bytes):
            blobs[sha256_hex(data)] = data
        not_a_directory = b"\xff\xff\xff\xff not a Directory message"
        blobs[sha256_hex(not_a_directory)] = not_a_directory
        tree = re_pb2.Tree(root=root, children=[leaf])
        tree_bytes = tree.SerializeToString()
        blobs[sha256_hex(tree_bytes)] = tree_bytes
        stdout = b"hello from the fuzzer's corpus\n"
        blobs[sha256_hex(stdout)] = stdout

        actions: Dict[str, Tuple[int, bytes]] = {}
        for i in range(4):
            action = f"corpus action {seed} {i}".encode()
            result = re_pb2.ActionResult(
                exit_code=i,
                stdout_digest=digest_of(stdout),
                output_files=[re_pb2.OutputFile(path=f"out/{n}", digest=digest_of(d)) for n, d in enumerate(small)],
                output_directories=[re_pb2.OutputDirectory(path="tree", tree_digest=digest_of(tree_bytes))],
            )
            actions[sha256_hex(action)] = (len(action), result.SerializeToString())
        missing = rng.randbytes(99) if hasattr(rng, "randbytes") else bytes(99)
        incomplete = re_pb2.ActionResult(output_files=[re_pb2.OutputFile(path="gone", digest=digest_of(missing))])
        corpus = cls(
            blobs=blobs,
            tree_root=digest_of(root_bytes),
            tree_directories=[root_bytes, leaf_bytes],
            not_a_directory=digest_of(not_a_directory),
            actions=actions,
            incomplete_action=digest_of(f"incomplete action {seed}".encode()),
            incomplete_result=incomplete.SerializeToString(),
        )
        corpus.bomb = zstd_bomb(cls.BOMB_BYTES)
        for h, data in blobs.items():
            _KNOWN_HASHES[data] = h
        return corpus

    def known_digests(self) -> List[re_pb2.Digest]:
        return [re_pb2.Digest(hash=h, size_bytes=len(d)) for h, d in sorted(self.blobs.items())]


def zstd_bomb(total_bytes: int, frame_bytes: int = 64 << 20) -> bytes:
    """Concatenated zstd frames of zeros: a few KiB that inflate to `total_bytes`."""
    frame = zstandard.ZstdCompressor(level=19).compress(bytes(frame_bytes))
    return frame * max(1, total_bytes // frame_bytes)


# --- hostile pieces ------------------------------------------------------------------------


def _bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n)) if n < 64 else rng.getrandbits(8 * n).to_bytes(n, "little")


def _fresh_blob(rng: random.Random, max_size: int = 3000) -> bytes:
    """Bytes no other case writes: a unique prefix (from the case's own random source), then noise."""
    size = rng.choice((0, 1, 3, 10, 100, rng.randint(1, max_size)))
    return b"fuzz:%032x:" % rng.getrandbits(128) + _bytes(rng, size)


UNICODE_SNIPPETS = ("ü", "日本", "\u202e", "\u0000", "\ufeff", "𝔘", "\u0663", "ß", "\t", " ", "\n", "%2e%2e", "\\")


def _random_segment(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return ""
    if kind == 1:
        return rng.choice(("..", ".", "...", "~", "-", "*", "%00"))
    if kind == 2:
        return "".join(rng.choice(UNICODE_SNIPPETS) for _ in range(rng.randint(1, 4)))
    if kind == 3:
        return rng.choice(("blobs", "uploads", "compressed-blobs", "actions", "actionResults", "operations"))
    if kind == 4:
        return "x" * rng.choice((1, 100, 1000, 5000))
    if kind == 5:
        return str(rng.choice((-1, 0, 2**63, 2**64, 10**30)))
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_-.") for _ in range(rng.randint(1, 12)))


def _hostile_hash(rng: random.Random, valid_hash: str) -> str:
    choice = rng.randrange(10)
    if choice == 0:
        return valid_hash.upper()
    if choice == 1:
        return valid_hash[:-1]
    if choice == 2:
        return valid_hash + "0"
    if choice == 3:
        return valid_hash[:10] + "g" + valid_hash[11:]
    if choice == 4:
        return ""
    if choice == 5:
        return "sha256:" + valid_hash
    if choice == 6:
        return valid_hash[:32] + "\u0663" + valid_hash[33:]
    if choice == 7:
        return " " + valid_hash[1:]
    if choice == 8:
        return "0" * 128
    return "".join(rng.choice(UNICODE_SNIPPETS + ("z", "Q")) for _ in range(rng.randint(1, 80)))


def _hostile_size_text(rng: random.Random, size: int) -> str:
    return rng.choice(
        (
            "-1",
            "+%d" % size,
            " %d" % size,
            "%d " % size,
            "0x%x" % size,
            "1e3",
            str(2**63),
            str(2**64),
            "9" * 40,
            "",
            "\u0663",
            "%d.0" % size,
            "-0",
        )
    )


def _instance(rng: random.Random) -> Tuple[str, bool]:
    """An instance name and whether REAPI clearly allows it (then the server must take it)."""
    choice = rng.randrange(10)
    if choice < 5:
        return "", True
    if choice == 5:
        return rng.choice(("main", "a/b/c", "ci-cache", "x" * 200)), True
    if choice == 6:
        return rng.choice(("..", "../..", ".", "ünï/cødé", "日本")), True
    if choice == 7:
        return "/".join(_random_segment(rng) for _ in range(rng.randint(1, 5))), False
    if choice == 8:
        return rng.choice(("a//b", "/", "a/", "/lead")), False
    return "/".join("s%d" % i for i in range(rng.choice((50, 400, 1200)))), False


def _digest_part(hash_hex: str, size_text: str, with_function: bool) -> str:
    return ("sha256/" if with_function else "") + f"{hash_hex}/{size_text}"


# --- checks of OK answers ---------------------------------------------------------------------


def read_check(expected: Optional[bytes], compressed: bool) -> Check:
    def check(responses: List[bytes]) -> Optional[str]:
        if expected is None:
            return "OK for a blob the server does not hold"
        data = b"".join(bytestream_pb2.ReadResponse.FromString(r).data for r in responses)
        if compressed:
            try:
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            except zstandard.ZstdError as error:
                return f"compressed read is not zstd: {error}"
        if data != expected:
            return f"read returned {len(data)} bytes that differ from the expected {len(expected)}"
        return None

    return check


def _write_check(expected_committed: Sequence[int]) -> Check:
    def check(responses: List[bytes]) -> Optional[str]:
        committed = bytestream_pb2.WriteResponse.FromString(responses[0]).committed_size
        if committed not in expected_committed:
            return f"committed_size {committed}, expected one of {list(expected_committed)}"
        return None

    return check


def _never_ok(why: str) -> Check:
    return lambda responses: f"OK where the server must refuse: {why}"


# --- the case generators ----------------------------------------------------------------------


class _Generator:
    def __init__(self, seed: int, index: int, corpus: Corpus) -> None:
        self.seed = seed
        self.index = index
        self.rng = random.Random(f"{seed}:{index}")
        self.corpus = corpus

    def case(
        self, kind: str, method: str, requests: List[bytes], allowed: FrozenSet[grpc.StatusCode], **kw: object
    ) -> FuzzCase:
        return FuzzCase(self.seed, self.index, kind, method, requests, frozenset(allowed), **kw)  # type: ignore[arg-type]

    def known(self) -> bytes:
        return self.corpus.blobs[self.rng.choice(sorted(self.corpus.blobs))]

    def random_hash(self) -> str:
        return sha256_hex(b"absent:%d:%d:%d" % (self.seed, self.index, self.rng.getrandbits(32)))

    def upload_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    # --- ByteStream Read ---

    def read(self) -> FuzzCase:
        rng = self.rng
        instance, instance_ok = _instance(rng)
        prefix = instance + "/" if instance else ""
        compressed = rng.random() < 0.25
        keyword = "compressed-blobs/zstd" if compressed else "blobs"
        pick = rng.randrange(12)
        offset = 0
        limit = 0
        if rng.random() < 0.4:
            offset = rng.choice((-1, -(2**63), 1, 2**62, 2**63 - 1, rng.randint(0, 2_000_000)))
        if rng.random() < 0.3:
            limit = rng.choice((-1, -(2**63), 1, 2**63 - 1, rng.randint(0, 2_000_000)))
        if pick <= 4:  # a stored blob, maybe hostile offsets/limits
            data = self.known()
            name = prefix + keyword + "/" + _digest_part(sha256_hex(data), str(len(data)), rng.random() < 0.1)
            allowed, check = self._read_expectation(data, offset, limit, compressed, instance_ok)
            return self._read_case("read/stored", name, offset, limit, allowed, check)
        if pick == 5:  # absent blob
            size = rng.choice((1, 10, 2**40, 2**63 - 1))
            name = prefix + keyword + "/" + _digest_part(self.random_hash(), str(size), False)
            absent_codes = frozenset({NOT_FOUND, OUT_OF_RANGE, INVALID} if (offset or limit) else {NOT_FOUND, INVALID})
            if instance_ok and not (offset or limit):
                absent_codes = frozenset({NOT_FOUND})
            return self._read_case("read/absent", name, offset, limit, absent_codes, _never_ok("absent blob"))
        if pick == 6:  # stored hash, wrong size
            data = self.known()
            size = rng.choice((0, len(data) + 1, max(0, len(data) - 1), 2**63 - 1))
            name = prefix + keyword + "/" + _digest_part(sha256_hex(data), str(size), False)
            return self._read_case(
                "read/wrong-size",
                name,
                offset,
                limit,
                frozenset({NOT_FOUND, INVALID, OUT_OF_RANGE}),
                _never_ok("hash of a stored blob with another size"),
            )
        if pick == 7:  # the empty blob
            name = prefix + keyword + "/" + _digest_part(EMPTY.hash, "0", False)
            allowed, check = self._read_expectation(b"", offset, limit, compressed, instance_ok)
            return self._read_case("read/empty", name, offset, limit, allowed, check)
        if pick == 8:  # hostile hash or size text
            data = self.known()
            hash_hex = _hostile_hash(rng, sha256_hex(data)) if rng.random() < 0.6 else sha256_hex(data)
            size_text = _hostile_size_text(rng, len(data)) if hash_hex == sha256_hex(data) else str(len(data))
            name = prefix + keyword + "/" + _digest_part(hash_hex, size_text, False)
            return self._read_case(
                "read/bad-digest",
                name,
                offset,
                limit,
                frozenset({INVALID, NOT_FOUND, OUT_OF_RANGE}),
                _never_ok("malformed digest in the name"),
            )
        if pick == 9:  # wrong compressor / keyword / shape
            data = self.known()
            digest_part = _digest_part(sha256_hex(data), str(len(data)), False)
            name = prefix + rng.choice(
                (
                    "compressed-blobs/"
                    + rng.choice(("ZSTD", "identity", "deflate", "brotli", "gzip", "", "zstd/zstd", "ü"))
                    + "/"
                    + digest_part,
                    "blob/" + digest_part,
                    "BLOBS/" + digest_part,
                    "uploads/" + self.upload_id() + "/blobs/" + digest_part,
                    "actions/" + digest_part,
                    "blobs/" + digest_part + "/extra",
                    "blobs/" + sha256_hex(data),
                    "blobs/",
                    "blobs",
                    "compressed-blobs/zstd/",
                    digest_part,
                    "",
                    "/blobs/" + digest_part,
                    "blobs//" + digest_part,
                    "blobs/md5/" + digest_part,
                    "blobs/SHA256/" + digest_part,
                )
            )
            return self._read_case(
                "read/bad-shape",
                name,
                offset,
                limit,
                frozenset({INVALID, NOT_FOUND, OUT_OF_RANGE}),
                _never_ok("malformed resource name"),
            )
        if pick == 10:  # random segments
            segments = [_random_segment(rng) for _ in range(rng.randint(0, 8))]
            if rng.random() < 0.5:
                data = self.known()
                segments.insert(rng.randint(0, len(segments)), "blobs/" + sha256_hex(data) + "/" + str(len(data)))
            name = "/".join(segments)
            return self._read_case(
                "read/random-segments",
                name,
                offset,
                limit,
                frozenset({INVALID, NOT_FOUND, OUT_OF_RANGE, OK}),
                self._maybe_known_check(name, offset, limit),
            )
        # very long names
        data = self.known()
        padding = "/".join("p" for _ in range(rng.choice((2040, 2100, 5000))))
        name = padding + "/blobs/" + sha256_hex(data) + "/" + str(len(data))
        return self._read_case(
            "read/long-name",
            name,
            offset,
            limit,
            frozenset({INVALID, OK, OUT_OF_RANGE}),
            self._maybe_known_check(name, offset, limit),
        )

    def _maybe_known_check(self, name: str, offset: int, limit: int) -> Check:
        """For names built from random pieces: OK only if it names a stored blob, with the
        requested part of its bytes."""
        expected: Optional[bytes] = None
        parts = name.split("/")
        for i in range(len(parts) - 1):
            if parts[i] in self.corpus.blobs and parts[i + 1] == str(len(self.corpus.blobs[parts[i]])):
                expected = self.corpus.blobs[parts[i]]
        if expected is not None:
            if offset < 0 or offset > len(expected) or limit < 0:
                expected = None
            else:
                expected = expected[offset : len(expected) if limit == 0 else offset + limit]
        return read_check(expected, compressed=False)

    def _read_expectation(
        self, data: bytes, offset: int, limit: int, compressed: bool, instance_ok: bool
    ) -> Tuple[FrozenSet[grpc.StatusCode], Check]:
        size = len(data)
        if offset < 0 or offset > size:
            return frozenset({OUT_OF_RANGE, INVALID} if instance_ok else {OUT_OF_RANGE, INVALID, NOT_FOUND}), _never_ok(
                "read_offset outside the blob"
            )
        if limit < 0:
            return frozenset({INVALID, OUT_OF_RANGE} if instance_ok else {INVALID, OUT_OF_RANGE, NOT_FOUND}), _never_ok(
                "negative read_limit"
            )
        if compressed and limit:
            # REAPI: read_limit with compressed-blobs is not meaningful; refusing and honouring are both fine.
            return frozenset({INVALID, OK}), read_check(data[offset:], compressed)
        end = size if limit == 0 else min(size, offset + limit)
        allowed = frozenset({OK}) if instance_ok else frozenset({OK, INVALID, NOT_FOUND})
        return allowed, read_check(data[offset:end], compressed)

    def _read_case(
        self, kind: str, name: str, offset: int, limit: int, allowed: FrozenSet[grpc.StatusCode], check: Check
    ) -> FuzzCase:
        request = bytestream_pb2.ReadRequest(resource_name=name, read_offset=offset, read_limit=limit)
        cancel_after: Optional[int] = None
        extra: FrozenSet[grpc.StatusCode] = frozenset()
        if self.rng.random() < 0.05:  # the client walks away after the first chunk
            cancel_after = 1
            extra = frozenset({CANCELLED})
        return self.case(
            kind, READ, [request.SerializeToString()], allowed | extra, check=check, cancel_after=cancel_after
        )

    # --- ByteStream Write ---

    def write(self) -> FuzzCase:
        rng = self.rng
        instance, instance_ok = _instance(rng) if rng.random() < 0.3 else ("", True)
        prefix = instance + "/" if instance else ""
        upload = self.upload_id()
        pick = rng.randrange(20)
        data = _fresh_blob(rng, 200_000 if rng.random() < 0.1 else 3000)
        name = f"{prefix}uploads/{upload}/blobs/{sha256_hex(data)}/{len(data)}"
        if rng.random() < 0.1:
            name += "/" + rng.choice(("meta", "a/b/c", "ü", "..", "x" * 100))  # optional_metadata: allowed
        loose = frozenset() if instance_ok else frozenset({INVALID, NOT_FOUND})
        chunks = _split_chunks(rng, data)

        def stream(
            offsets: Optional[List[int]] = None, finish: Optional[List[bool]] = None, names: Optional[List[str]] = None
        ) -> List[bytes]:
            out = []
            position = 0
            for i, chunk in enumerate(chunks):
                out.append(
                    bytestream_pb2.WriteRequest(
                        resource_name=(names[i] if names else (name if i == 0 else "")),
                        write_offset=offsets[i] if offsets else position,
                        data=chunk,
                        finish_write=finish[i] if finish else (i == len(chunks) - 1),
                    ).SerializeToString()
                )
                position += len(chunk)
            return out

        if pick <= 3:  # a good upload
            acknowledged = data if instance_ok else None
            return self.case(
                "write/good",
                WRITE,
                stream(),
                frozenset({OK}) | loose,
                check=_write_check((len(data),)),
                acknowledged_blob=acknowledged,
            )
        if pick == 4:  # bytes that do not match the digest
            bad = bytearray(data)
            bad[rng.randrange(len(bad))] ^= 0x01
            chunks = _split_chunks(rng, bytes(bad))
            return self.case(
                "write/mismatch", WRITE, stream(), frozenset({INVALID}) | loose, check=_never_ok("digest mismatch")
            )
        if pick == 5:  # more data than declared
            chunks = _split_chunks(rng, data + b"more")
            return self.case(
                "write/too-long",
                WRITE,
                stream(),
                frozenset({INVALID, OUT_OF_RANGE}) | loose,
                check=_never_ok("too much data"),
            )
        if pick == 6:  # less data than declared, finished
            chunks = _split_chunks(rng, data[: rng.randrange(len(data))]) or [b""]
            return self.case(
                "write/too-short", WRITE, stream(), frozenset({INVALID}) | loose, check=_never_ok("too little data")
            )
        if pick == 7:  # resource name changes mid-stream
            if len(chunks) < 2:
                chunks = [data[:1], data[1:]]
            other = _fresh_blob(rng)
            names = [name] + [
                rng.choice(
                    (
                        f"uploads/{self.upload_id()}/blobs/{sha256_hex(other)}/{len(other)}",
                        name + "x",
                        "blobs/" + sha256_hex(data) + "/" + str(len(data)),
                    )
                )
                for _ in chunks[1:]
            ]
            return self.case(
                "write/name-changes",
                WRITE,
                stream(names=names),
                frozenset({INVALID}) | loose,
                check=_never_ok("name changed"),
            )
        if pick == 8:  # offsets that skip, repeat, go back or are negative
            if len(chunks) < 2:
                chunks = [data[:1], data[1:]]
            offsets = []
            position = 0
            for chunk in chunks:
                offsets.append(position)
                position += len(chunk)
            which = rng.randrange(len(offsets))
            offsets[which] = rng.choice((offsets[which] + 1, offsets[which] - 1, -1, 2**62, 0 if which else 5))
            return self.case(
                "write/bad-offsets",
                WRITE,
                stream(offsets=offsets),
                frozenset({INVALID, OUT_OF_RANGE}) | loose,
                check=_never_ok("bad offsets"),
            )
        if pick == 9:  # finish_write twice (or more), then more data
            requests = stream()
            extra = bytestream_pb2.WriteRequest(write_offset=len(data), data=b"", finish_write=True).SerializeToString()
            tail = bytestream_pb2.WriteRequest(
                write_offset=len(data), data=b"after-finish", finish_write=True
            ).SerializeToString()
            requests += [extra, tail][: rng.randint(1, 2)]
            return self.case(
                "write/finish-twice",
                WRITE,
                requests,
                frozenset({OK, INVALID}) | loose,
                check=_write_check((len(data),)),
                acknowledged_blob=data if instance_ok else None,
            )
        if pick == 10:  # ends without finish_write: held for a resume
            chunks = _split_chunks(rng, data[: rng.randrange(len(data) + 1)]) or [b""]
            held = sum(len(c) for c in chunks)
            finish = [False] * len(chunks)
            return self.case(
                "write/unfinished", WRITE, stream(finish=finish), frozenset({OK}) | loose, check=_write_check((held,))
            )
        if pick == 11:  # truncated: the client cancels mid-stream
            if len(chunks) < 2:
                chunks = [data[:1], data[1:]]
            requests = stream()
            return self.case(
                "write/client-cancels",
                WRITE,
                requests,
                frozenset({CANCELLED, OK}) | loose,
                check=_write_check((len(data),)),
                cancel_after=rng.randrange(1, len(requests)),
            )
        if pick == 12:  # a blob that is already stored (answers at once)
            known = self.known()
            name = f"{prefix}uploads/{upload}/blobs/{sha256_hex(known)}/{len(known)}"
            chunks = _split_chunks(rng, known)
            return self.case(
                "write/already-stored", WRITE, stream(), frozenset({OK}) | loose, check=_write_check((len(known),))
            )
        if pick == 13:  # hostile resource names
            hostile = rng.choice(
                (
                    f"uploads//blobs/{sha256_hex(data)}/{len(data)}",
                    f"uploads/blobs/{sha256_hex(data)}/{len(data)}",
                    f"uploads/{upload}/blobs/{_hostile_hash(rng, sha256_hex(data))}/{len(data)}",
                    f"uploads/{upload}/blobs/{sha256_hex(data)}/{_hostile_size_text(rng, len(data))}",
                    f"uploads/{upload}/compressed-blobs/{rng.choice(('gzip', 'ZSTD', 'identity', 'deflate', ''))}/{sha256_hex(data)}/{len(data)}",
                    f"blobs/{sha256_hex(data)}/{len(data)}",
                    f"uploads/{upload}",
                    f"uploads/{upload}/blobs",
                    "",
                    "/".join(_random_segment(rng) for _ in range(rng.randint(1, 7))),
                    f"uploads/{'u' * 5000}/blobs/{sha256_hex(data)}/{len(data)}",
                )
            )
            names = [hostile] + [""] * (len(chunks) - 1)
            return self.case(
                "write/bad-name",
                WRITE,
                stream(names=names),
                frozenset({INVALID, NOT_FOUND}),
                check=_never_ok("bad write name"),
            )
        if pick == 14:  # no messages at all, or a first message without a name
            if rng.random() < 0.5:
                return self.case("write/empty-stream", WRITE, [], frozenset({INVALID}), check=_never_ok("empty stream"))
            names = [""] * len(chunks)
            return self.case(
                "write/no-name", WRITE, stream(names=names), frozenset({INVALID}), check=_never_ok("no name")
            )
        if pick == 15:  # garbage bytes as the 1st or a later message
            requests = stream()
            position = rng.randrange(len(requests) + 1)
            requests.insert(position, _garbage_message(rng))
            return self.case(
                "write/garbage-message",
                WRITE,
                requests,
                frozenset({INVALID, OK}) | loose,
                check=_write_check((len(data),)),
                acknowledged_blob=None,
            )
        if pick == 16:  # the empty blob
            name = f"{prefix}uploads/{upload}/blobs/{EMPTY.hash}/0"
            chunks = [b""] if rng.random() < 0.5 else [b"not empty"]
            return self.case(
                "write/empty-blob", WRITE, stream(), frozenset({OK, INVALID}) | loose, check=_write_check((0,))
            )
        if pick == 17:  # a huge declared size
            size = rng.choice((2**40, 2**62, 2**63 - 1))
            name = f"{prefix}uploads/{upload}/blobs/{sha256_hex(data)}/{size}"
            finish = [rng.random() < 0.5 for _ in chunks]
            return self.case(
                "write/huge-size",
                WRITE,
                stream(finish=finish),
                frozenset({INVALID, EXHAUSTED, OK, OUT_OF_RANGE}) | loose,
                check=_write_check(tuple(sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks)))),
            )
        return self.compressed_write(prefix, upload, data, loose, instance_ok)

    def compressed_write(
        self, prefix: str, upload: str, data: bytes, loose: FrozenSet[grpc.StatusCode], instance_ok: bool
    ) -> FuzzCase:
        rng = self.rng
        name = f"{prefix}uploads/{upload}/compressed-blobs/zstd/{sha256_hex(data)}/{len(data)}"
        pick = rng.randrange(6)
        if pick <= 1:
            payload = zstandard.ZstdCompressor(level=rng.choice((1, 3))).compress(data)
            kind, allowed, check, acknowledged = "zwrite/good", frozenset({OK}), _write_check((len(payload),)), data
        elif pick == 2:
            payload = self.corpus.bomb[: rng.choice((len(self.corpus.bomb), 4096, 100))]
            kind, allowed, check, acknowledged = "zwrite/bomb", frozenset({INVALID}), _never_ok("zstd bomb"), None
        elif pick == 3:
            payload = _bytes(rng, rng.randint(1, 5000))
            kind, allowed, check, acknowledged = "zwrite/garbage", frozenset({INVALID}), _never_ok("not zstd"), None
        elif pick == 4:
            full = zstandard.ZstdCompressor().compress(data)
            payload = full[: rng.randrange(1, len(full))]
            kind, allowed, check, acknowledged = (
                "zwrite/truncated-frame",
                frozenset({INVALID}),
                _never_ok("truncated frame"),
                None,
            )
        else:
            other = _fresh_blob(rng)
            payload = zstandard.ZstdCompressor().compress(other)
            kind, allowed, check, acknowledged = (
                "zwrite/other-content",
                frozenset({INVALID}),
                _never_ok("other content"),
                None,
            )
        requests = []
        position = 0
        pieces = _split_chunks(rng, payload)
        for i, piece in enumerate(pieces):
            requests.append(
                bytestream_pb2.WriteRequest(
                    resource_name=name if i == 0 else "",
                    write_offset=position,
                    data=piece,
                    finish_write=i == len(pieces) - 1,
                ).SerializeToString()
            )
            position += len(piece)
        return self.case(
            kind, WRITE, requests, allowed | loose, check=check, acknowledged_blob=acknowledged if instance_ok else None
        )

    # --- QueryWriteStatus ---

    def query_write_status(self) -> FuzzCase:
        rng = self.rng
        data = self.known() if rng.random() < 0.3 else _fresh_blob(rng)
        stored = sha256_hex(data) in self.corpus.blobs
        pick = rng.randrange(3)
        if pick == 0:
            name = f"uploads/{self.upload_id()}/blobs/{sha256_hex(data)}/{len(data)}"
            check: Check = (lambda r: None) if stored else _query_check(0, False)
            allowed = frozenset({OK, NOT_FOUND}) if not stored else frozenset({OK})
            return self.case(
                "query/plain",
                QUERY_WRITE_STATUS,
                [bytestream_pb2.QueryWriteStatusRequest(resource_name=name).SerializeToString()],
                allowed,
                check=check,
            )
        name = rng.choice(
            (
                f"blobs/{sha256_hex(data)}/{len(data)}",
                f"uploads/{self.upload_id()}/blobs/{_hostile_hash(rng, sha256_hex(data))}/{len(data)}",
                "/".join(_random_segment(rng) for _ in range(rng.randint(0, 6))),
                "",
            )
        )
        return self.case(
            "query/bad-name",
            QUERY_WRITE_STATUS,
            [bytestream_pb2.QueryWriteStatusRequest(resource_name=name).SerializeToString()],
            frozenset({INVALID, NOT_FOUND, OK}),
            check=_query_check(0, False, allow_complete=True),
        )

    # --- CAS ---

    def _digest_list(self, n: int) -> Tuple[List[re_pb2.Digest], bool, List[str]]:
        """n digests (stored, absent, empty, duplicates, sometimes malformed): (digests, any malformed, absent hashes)."""
        rng = self.rng
        digests: List[re_pb2.Digest] = []
        malformed = False
        absent: List[str] = []
        for _ in range(n):
            roll = rng.random()
            if roll < 0.4:
                data = self.known()
                digests.append(digest_of(data))
            elif roll < 0.75:
                h = self.random_hash()
                digests.append(re_pb2.Digest(hash=h, size_bytes=rng.choice((1, 5, 1000))))
                absent.append(h)
            elif roll < 0.8:
                digests.append(EMPTY)
            elif roll < 0.9 and digests:
                digests.append(rng.choice(digests))
            elif roll < 0.95:
                data = self.known()
                h = _hostile_hash(rng, sha256_hex(data))
                digests.append(re_pb2.Digest(hash=h, size_bytes=len(data)))
                malformed = True
            else:
                data = self.known()
                digests.append(re_pb2.Digest(hash=sha256_hex(data), size_bytes=rng.choice((-1, -(2**63)))))
                malformed = True
        return digests, malformed, absent

    def find_missing(self) -> FuzzCase:
        rng = self.rng
        n = rng.choice((0, 1, 2, 5, 30, 1000, 10000 if rng.random() < 0.05 else 100))
        digests, malformed, _absent = self._digest_list(n)
        function = rng.choice((0, 0, 0, 1, 2, 99, -5)) if rng.random() < 0.2 else 0
        request = re_pb2.FindMissingBlobsRequest(
            instance_name=_instance(rng)[0] if rng.random() < 0.2 else "",
            blob_digests=digests,
            digest_function=function,
        )
        bad_function = function not in (0, re_pb2.DigestFunction.SHA256)
        allowed = frozenset({INVALID}) if (malformed or bad_function) else frozenset({OK, INVALID})
        # Absent digests are sha256("absent:...") with another size than their preimage: nobody
        # ever writes them. Stored corpus blobs must never be reported missing.
        expected_missing = {
            (d.hash, d.size_bytes) for d in digests if d.hash not in self.corpus.blobs and d.hash != EMPTY.hash
        }

        def exact_missing(responses: List[bytes]) -> Optional[str]:
            got = {
                (d.hash, d.size_bytes)
                for d in re_pb2.FindMissingBlobsResponse.FromString(responses[0]).missing_blob_digests
            }
            if got != expected_missing:
                return (
                    f"FindMissingBlobs: stored reported missing {sorted(got - expected_missing)[:2]}, "
                    f"absent reported present {sorted(expected_missing - got)[:2]}"
                )
            return None

        check = _never_ok("malformed digest or digest function") if (malformed or bad_function) else exact_missing
        return self.case("cas/find-missing", FIND_MISSING, [request.SerializeToString()], allowed, check=check)

    def batch_update(self) -> FuzzCase:
        rng = self.rng
        n = rng.choice((0, 1, 2, 3, 10, 100, 2000 if rng.random() < 0.03 else 20))
        entries: List[re_pb2.BatchUpdateBlobsRequest.Request] = []
        entry_codes: List[FrozenSet[int]] = []
        for _ in range(n):
            roll = rng.random()
            data = (
                _fresh_blob(rng, 500)
                if roll < 0.5
                else self.known() if len(entries) < 3 or roll < 0.55 else _fresh_blob(rng, 50)
            )
            if len(data) > 100_000:
                data = _fresh_blob(rng, 100)
            digest = digest_of(data)
            payload = data
            compressor = re_pb2.Compressor.IDENTITY
            codes = frozenset({0})
            mutate = rng.random()
            if mutate < 0.1:
                payload = data + b"x"
                codes = frozenset({INVALID.value[0]})
            elif mutate < 0.15:
                digest = re_pb2.Digest(hash=_hostile_hash(rng, digest.hash), size_bytes=digest.size_bytes)
                codes = frozenset({INVALID.value[0]})
            elif mutate < 0.2:
                digest = re_pb2.Digest(hash=digest.hash, size_bytes=rng.choice((-1, digest.size_bytes + 1, 2**62)))
                codes = frozenset({INVALID.value[0], EXHAUSTED.value[0]})
            elif mutate < 0.3:
                compressor = re_pb2.Compressor.ZSTD
                payload = zstandard.ZstdCompressor().compress(data)
            elif mutate < 0.33:
                compressor = re_pb2.Compressor.ZSTD
                payload = self.corpus.bomb
                codes = frozenset({INVALID.value[0]})
            elif mutate < 0.36:
                compressor = re_pb2.Compressor.ZSTD
                payload = _bytes(rng, 40)
                codes = frozenset({INVALID.value[0]})
            elif mutate < 0.39:
                compressor = rng.choice((re_pb2.Compressor.DEFLATE, re_pb2.Compressor.BROTLI, 77, -3))
                codes = frozenset({INVALID.value[0]})
            elif mutate < 0.41:
                digest, payload = EMPTY, rng.choice((b"", b"not empty"))
                codes = frozenset({0}) if not payload else frozenset({INVALID.value[0]})
            if rng.random() < 0.05 and entries:  # a duplicate of an earlier entry
                entries.append(entries[-1])
                entry_codes.append(entry_codes[-1])
            entries.append(re_pb2.BatchUpdateBlobsRequest.Request(digest=digest, data=payload, compressor=compressor))
            entry_codes.append(codes)
        function = rng.choice((0, 1, 9)) if rng.random() < 0.1 else 0
        request = re_pb2.BatchUpdateBlobsRequest(requests=entries, digest_function=function)
        serialized = request.SerializeToString()
        if function not in (0, 1):
            return self.case(
                "cas/batch-update-bad-function",
                BATCH_UPDATE,
                [serialized],
                frozenset({INVALID}),
                check=_never_ok("digest function"),
            )
        if len(serialized) > RECEIVE_LIMIT_BYTES:
            return self.case(
                "cas/batch-update-oversized",
                BATCH_UPDATE,
                [serialized],
                frozenset({EXHAUSTED}),
                check=_never_ok("oversized"),
            )

        def check(responses: List[bytes]) -> Optional[str]:
            answer = re_pb2.BatchUpdateBlobsResponse.FromString(responses[0])
            if len(answer.responses) != len(entries):
                return f"{len(answer.responses)} statuses for {len(entries)} entries"
            for i, (entry, codes) in enumerate(zip(answer.responses, entry_codes)):
                if entry.status.code not in codes:
                    return f"entry {i}: status {entry.status.code} ({entry.status.message[:100]}), expected {sorted(codes)}"
            return None

        # REAPI lets a server refuse a batch whose total is too large as a whole.
        allowed = frozenset({OK, INVALID})
        return self.case("cas/batch-update", BATCH_UPDATE, [serialized], allowed, check=check)

    def batch_read(self) -> FuzzCase:
        rng = self.rng
        n = rng.choice((0, 1, 2, 5, 50, 3000 if rng.random() < 0.1 else 10))
        digests, malformed, _absent = self._digest_list(n)
        if rng.random() < 0.1:
            digests.append(
                digest_of(self.corpus.blobs[max(self.corpus.blobs, key=lambda h: len(self.corpus.blobs[h]))])
            )
            digests *= rng.choice((1, 3, 4))  # past max_batch_total_size_bytes
        compressors = rng.choice(
            ([], [re_pb2.Compressor.ZSTD], [re_pb2.Compressor.DEFLATE, 42], [re_pb2.Compressor.IDENTITY])
        )
        request = re_pb2.BatchReadBlobsRequest(digests=digests, acceptable_compressors=compressors)
        total = sum(max(0, d.size_bytes) for d in digests)
        corpus = self.corpus

        def check(responses: List[bytes]) -> Optional[str]:
            answer = re_pb2.BatchReadBlobsResponse.FromString(responses[0])
            if len(answer.responses) != len(digests):
                return f"{len(answer.responses)} answers for {len(digests)} digests"
            for item in answer.responses:
                if item.status.code == 0:
                    data = item.data
                    if item.compressor == re_pb2.Compressor.ZSTD:
                        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
                    elif item.compressor != re_pb2.Compressor.IDENTITY:
                        return f"answered with compressor {item.compressor} nobody asked for"
                    if sha256_hex(data) != item.digest.hash or len(data) != item.digest.size_bytes:
                        return (
                            f"BatchReadBlobs served bytes that do not match {item.digest.hash}/{item.digest.size_bytes}"
                        )
                elif item.status.code == NOT_FOUND.value[0]:
                    if item.digest.hash in corpus.blobs and item.digest.size_bytes == len(
                        corpus.blobs[item.digest.hash]
                    ):
                        return f"stored blob {item.digest.hash} reported NOT_FOUND"
                elif item.status.code != INVALID.value[0]:
                    return f"entry status {item.status.code}: {item.status.message[:100]}"
            return None

        if total > MAX_BATCH_BYTES:
            allowed = frozenset({INVALID, EXHAUSTED, OK})
        elif malformed:
            allowed = frozenset({INVALID, OK})
        else:
            allowed = frozenset({OK})
        return self.case("cas/batch-read", BATCH_READ, [request.SerializeToString()], allowed, check=check)

    def get_tree(self) -> FuzzCase:
        rng = self.rng
        pick = rng.randrange(6)
        root = self.corpus.tree_root
        page_size = rng.choice((0, 1, 2, -1, 2**31 - 1, -(2**31))) if rng.random() < 0.5 else 0
        token = ""
        if pick == 1:
            token = rng.choice(
                (
                    "garbage",
                    "tree-v1:",
                    f"tree-v1:{root.hash}:",
                    f"tree-v1:{root.hash}:-1",
                    f"tree-v1:{root.hash}:{10**40}",
                    f"tree-v1:{root.hash}:1",
                    f"tree-v1:{'0' * 64}:1",
                    "\u0663" * 10,
                    "x" * 10000,
                    f"tree-v1:{root.hash}:\u0663",
                )
            )
        elif pick == 2:
            root = re_pb2.Digest(hash=self.random_hash(), size_bytes=100)
        elif pick == 3:
            root = self.corpus.not_a_directory
        elif pick == 4:
            root = re_pb2.Digest(hash=_hostile_hash(rng, root.hash), size_bytes=root.size_bytes)
        elif pick == 5:
            root = EMPTY
        request = re_pb2.GetTreeRequest(root_digest=root, page_size=page_size, page_token=token)
        directories = set(self.corpus.tree_directories)

        def check(responses: List[bytes]) -> Optional[str]:
            for response in responses:
                for directory in re_pb2.GetTreeResponse.FromString(response).directories:
                    serialized = directory.SerializeToString()
                    if serialized not in directories and serialized != b"":
                        return "GetTree returned a Directory that is not in the tree"
            return None

        allowed: FrozenSet[grpc.StatusCode] = frozenset({OK, INVALID, NOT_FOUND, OUT_OF_RANGE})
        if pick == 0 and page_size >= 0:
            allowed = frozenset({OK})
        if pick == 2:
            allowed = frozenset({NOT_FOUND})
        if pick == 4:
            allowed = frozenset({INVALID})
        return self.case(
            "cas/get-tree",
            GET_TREE,
            [request.SerializeToString()],
            allowed | (frozenset({INVALID}) if page_size < 0 else frozenset()),
            check=check,
        )

    # --- Action cache ---

    def get_action_result(self) -> FuzzCase:
        rng = self.rng
        pick = rng.randrange(5)
        inline = rng.random() < 0.3
        request = re_pb2.GetActionResultRequest(
            inline_stdout=inline and rng.random() < 0.5,
            inline_stderr=inline and rng.random() < 0.5,
            inline_output_files=(
                [rng.choice(("out/0", "out/1", "nope", "ü" * 50, "")) for _ in range(rng.randint(0, 5))]
                if inline
                else []
            ),
        )
        if pick <= 1:
            action = rng.choice(sorted(self.corpus.actions))
            size, serialized = self.corpus.actions[action]
            request.action_digest.CopyFrom(re_pb2.Digest(hash=action, size_bytes=size))
            expected = re_pb2.ActionResult.FromString(serialized)
            return self.case(
                "ac/get-hit",
                GET_ACTION_RESULT,
                [request.SerializeToString()],
                frozenset({OK}),
                check=_action_result_check(expected, self.corpus),
            )
        if pick == 2:
            request.action_digest.CopyFrom(
                re_pb2.Digest(hash=self.random_hash(), size_bytes=rng.choice((0, 1, 140, 2**63 - 1)))
            )
            return self.case(
                "ac/get-miss",
                GET_ACTION_RESULT,
                [request.SerializeToString()],
                frozenset({NOT_FOUND}),
                check=_never_ok("miss"),
            )
        if pick == 3:
            request.action_digest.CopyFrom(self.corpus.incomplete_action)
            return self.case(
                "ac/get-incomplete",
                GET_ACTION_RESULT,
                [request.SerializeToString()],
                frozenset({NOT_FOUND}),
                check=_never_ok("a referenced blob is missing"),
            )
        bad = re_pb2.Digest(hash=_hostile_hash(rng, self.random_hash()), size_bytes=rng.choice((5, -1)))
        request.action_digest.CopyFrom(bad)
        if rng.random() < 0.3:
            request.ClearField("action_digest")
        if rng.random() < 0.2:
            request.digest_function = rng.choice((2, 3, 100))
        return self.case(
            "ac/get-bad",
            GET_ACTION_RESULT,
            [request.SerializeToString()],
            frozenset({INVALID}),
            check=_never_ok("bad digest"),
        )

    def update_action_result(self) -> FuzzCase:
        rng = self.rng
        action = re_pb2.Digest(hash=self.random_hash(), size_bytes=rng.randint(1, 500))
        pick = rng.randrange(6)
        result = re_pb2.ActionResult(exit_code=rng.choice((0, 1, -1, 2**31 - 1)))
        if pick == 0:  # well formed, blobs absent (stored; a later Get is a miss)
            result.output_files.add(path="out", digest=re_pb2.Digest(hash=self.random_hash(), size_bytes=3))
            allowed = frozenset({OK, PRECONDITION})
        elif pick == 1:  # malformed digests inside
            target = rng.choice(("stdout", "file", "dir", "root"))
            bad = re_pb2.Digest(hash=_hostile_hash(rng, self.random_hash()), size_bytes=rng.choice((3, -7)))
            if target == "stdout":
                result.stdout_digest.CopyFrom(bad)
            elif target == "file":
                result.output_files.add(path=rng.choice(("../../etc/passwd", "/abs", "ü", "")), digest=bad)
            elif target == "dir":
                result.output_directories.add(path="d", tree_digest=bad)
            else:
                result.output_directories.add(path="d", tree_digest=digest_of(b"t"), root_directory_digest=bad)
            allowed = frozenset({INVALID})
        elif pick == 2:  # no action_result at all, or a bad action digest
            request = re_pb2.UpdateActionResultRequest(
                action_digest=action if rng.random() < 0.5 else re_pb2.Digest(hash="zz", size_bytes=1)
            )
            return self.case(
                "ac/update-bad",
                UPDATE_ACTION_RESULT,
                [request.SerializeToString()],
                frozenset({INVALID}),
                check=_never_ok("no result"),
            )
        elif pick == 3:  # garbage bytes where the ActionResult goes
            garbage = _garbage_message(rng)
            prefix = re_pb2.UpdateActionResultRequest(action_digest=action).SerializeToString()
            raw = prefix + b"\x12" + _varint(len(garbage)) + garbage  # field 2 (action_result), length-delimited
            return self.case("ac/update-garbage-result", UPDATE_ACTION_RESULT, [raw], frozenset({INVALID, OK}))
        elif pick == 4:  # many outputs and odd paths
            for i in range(rng.choice((10, 1000))):
                result.output_files.add(
                    path=rng.choice((f"o/{i}", "../x", "ü/" * 20, "/abs/%d" % i)),
                    digest=self.rng.choice(self.corpus.known_digests()),
                )
            result.stdout_raw = _bytes(rng, rng.choice((0, 100)))
            allowed = frozenset({OK, INVALID})
        else:  # a huge result (over the receive limit)
            if rng.random() < 0.05:
                result.stdout_raw = b"x" * (RECEIVE_LIMIT_BYTES + 10)
                allowed = frozenset({EXHAUSTED})
            else:
                result.stderr_raw = b"y" * rng.choice((1000, 100_000))
                allowed = frozenset({OK, INVALID})
        request = re_pb2.UpdateActionResultRequest(action_digest=action, action_result=result)
        return self.case("ac/update", UPDATE_ACTION_RESULT, [request.SerializeToString()], allowed)

    # --- anything ---

    def raw_garbage(self) -> FuzzCase:
        """Bytes that are not a valid message of the method's request type (they may, rarely, parse)."""
        rng = self.rng
        method = rng.choice(sorted(SHAPES))
        body = _garbage_message(rng)
        requests = [body] if SHAPES[method] != CLIENT_STREAM else [body] * rng.randint(1, 3)
        allowed = SPEC_CODES
        if method == CAPABILITIES:
            allowed = frozenset({OK, INVALID})
        return self.case("raw/garbage", method, requests, allowed)

    def oversized(self) -> FuzzCase:
        rng = self.rng
        method = rng.choice(sorted(SHAPES))
        size = rng.choice((RECEIVE_LIMIT_BYTES + 1, RECEIVE_LIMIT_BYTES + 4096, 8 << 20))
        body = b"\x0a" + _varint(size) + b"\x00" * size  # field 1, length-delimited, all zeros
        requests = [body] if SHAPES[method] != CLIENT_STREAM else [body]
        return self.case("raw/oversized", method, requests, frozenset({EXHAUSTED}))

    def unknown_method(self) -> FuzzCase:
        rng = self.rng
        method = rng.choice(
            (
                "/build.bazel.remote.execution.v2.Execution/Execute",
                "/build.bazel.remote.execution.v2.Execution/WaitExecution",
                "/google.longrunning.Operations/GetOperation",
                "/google.bytestream.ByteStream/Nope",
                "/build.bazel.remote.execution.v2.ActionCache/getActionResult",
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/SplitBlob",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                "/x/y",
                "/" + "a" * rng.choice((10, 2000)),
                "/../../etc/passwd",
                "/build.bazel.remote.execution.v2.Capabilities/",
            )
        )
        return self.case("raw/unknown-method", method, [_garbage_message(rng)], frozenset({UNIMPLEMENTED}))

    def deadline(self) -> FuzzCase:
        """A valid call with a deadline the client cannot meet (the server must shrug it off)."""
        case = self.read()
        case.kind = "deadline/" + case.kind
        case.timeout = self.rng.choice((0.0001, 0.001, 0.003))
        case.allowed = case.allowed | frozenset({DEADLINE, CANCELLED})
        return case

    def with_metadata(self, case: FuzzCase) -> FuzzCase:
        rng = self.rng
        pairs: List[Tuple[str, object]] = []
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(
                (
                    "build.bazel.remote.execution.v2.requestmetadata-bin",
                    "x-fuzz",
                    "authorization",
                    "x-bin-ish-bin",
                    "x-grpc-like",
                )
            )
            if key.endswith("-bin"):
                pairs.append((key, _bytes(rng, rng.randint(0, 300))))
            else:
                pairs.append((key, "".join(rng.choice("abcXYZ 012=;/+") for _ in range(rng.randint(0, 200)))))
        case.metadata = tuple(pairs)
        case.kind += "+metadata"
        return case


def _query_check(committed: int, complete: bool, allow_complete: bool = False) -> Check:
    def check(responses: List[bytes]) -> Optional[str]:
        answer = bytestream_pb2.QueryWriteStatusResponse.FromString(responses[0])
        if allow_complete:
            return None
        if (answer.committed_size, answer.complete) != (committed, complete):
            return f"QueryWriteStatus said {answer.committed_size}/{answer.complete}, expected {committed}/{complete}"
        return None

    return check


def _action_result_check(expected: re_pb2.ActionResult, corpus: Corpus) -> Check:
    def check(responses: List[bytes]) -> Optional[str]:
        got = re_pb2.ActionResult.FromString(responses[0])
        # Inlined blobs (stdout_raw, contents) may be added; they must be the right bytes.
        if got.stdout_raw and got.stdout_raw != corpus.blobs.get(got.stdout_digest.hash):
            return "inlined stdout differs from the stdout blob"
        for output in got.output_files:
            if output.contents and output.contents != corpus.blobs.get(output.digest.hash):
                return f"inlined contents of {output.path} differ from its blob"
        got.stdout_raw = b""
        got.stderr_raw = b""
        for output in got.output_files:
            output.contents = b""
        if got != expected:
            return "GetActionResult returned another ActionResult"
        return None

    return check


def _split_chunks(rng: random.Random, data: bytes) -> List[bytes]:
    if not data:
        return [b""]
    chunks = []
    position = 0
    while position < len(data):
        step = rng.choice((1, 7, 1000, 16384, 65536, 70000, len(data)))
        chunks.append(data[position : position + step])
        position += step
        if len(chunks) > 40:
            chunks.append(data[position:])
            break
    return [c for c in chunks if c] or [b""]


def _garbage_message(rng: random.Random) -> bytes:
    pick = rng.randrange(6)
    if pick == 0:
        return _bytes(rng, rng.randint(1, 200))
    if pick == 1:  # a length prefix that runs past the end
        return b"\x0a" + _varint(rng.randint(10, 10**6)) + _bytes(rng, rng.randint(0, 5))
    if pick == 2:  # invalid UTF-8 in a string field (resource_name / instance_name are field 1)
        return b"\x0a\x04\xff\xfe\xfd\xfc"
    if pick == 3:  # a varint that never ends
        return b"\x08" + b"\xff" * rng.randint(10, 20)
    if pick == 4:  # a group / reserved wire types
        return bytes((rng.choice((0x0B, 0x0C, 0x0E, 0x0F, 0x07)),)) + _bytes(rng, rng.randint(0, 20))
    return b"\x00" * rng.randint(1, 10)  # field number 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Weights: how often each kind of case comes up.
_KINDS: List[Tuple[str, float]] = [
    ("read", 24),
    ("write", 22),
    ("query_write_status", 4),
    ("find_missing", 8),
    ("batch_update", 9),
    ("batch_read", 7),
    ("get_tree", 5),
    ("get_action_result", 8),
    ("update_action_result", 5),
    ("raw_garbage", 5),
    ("unknown_method", 1),
    ("deadline", 1.6),
    ("oversized", 0.4),
]


def generate_case(seed: int, index: int, corpus: Corpus) -> FuzzCase:
    """Case `index` of `seed` (deterministic)."""
    generator = _Generator(seed, index, corpus)
    kind = generator.rng.choices([k for k, _ in _KINDS], weights=[w for _, w in _KINDS])[0]
    case: FuzzCase = getattr(generator, kind)()
    if generator.rng.random() < 0.05 and case.method != WRITE:
        case = generator.with_metadata(case)
    assert not (case.allowed & NEVER_CODES), case.label
    return case


__all__ = [
    "CLIENT_SIDE_CODES",
    "Corpus",
    "FuzzCase",
    "NEVER_CODES",
    "SPEC_CODES",
    "SHAPES",
    "generate_case",
    "read_check",
    "digest_of",
    "sha256_hex",
    "zstd_bomb",
]
