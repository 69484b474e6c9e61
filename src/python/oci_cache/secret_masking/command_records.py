"""A REAPI Command with its secrets masked: the record a mode=max image holds in
place of a Command that carries a secret.

    record = record_command(command, command_digest, key, extra_names)
    record.masked_count           # 0: the Command holds nothing secret
    data = record.to_bytes()      # compact JSON, same Command + key + names → same bytes
    parse_command_record(data) == record

What is masked (everything else is kept as the Command has it):
- the value of every environment variable whose name looks secret
  (names.is_secret_name, with the user's extra names), whole;
- credential-looking spans (credentials.py) of arguments, environment values and
  platform property values;
- any other occurrence, in any text of the record (arguments, environment values,
  platform values, output paths, working directory), of a value masked above that is
  at least MIN_SCRUBBED_LENGTH characters long (a token pasted into a script).

A masked span becomes masked_values.mask_value(span): the same text masks the same
way under the same key, so two records (or a record and a live Command turned into
one) compare value by value. `maskedWith` names the key (its key_id); masks made
with different keys do not compare. Empty values stay empty.

JSON, one object, keys in this order (docs/format.md §8):
{"schema":"pants-oci-cache/command-record/v1","command":"HASH/SIZE","maskedWith":"k1:…",
 "maskedCount":N,"arguments":[…],"maskedArguments":[argument numbers],
 "environment":[{"name":…,"value":…[,"masked":true]}…],"platform":[{"name":…,"value":…}…],
 "workingDirectory":…,"outputPaths":[…],"outputFiles":[…],"outputDirectories":[…],
 "outputDirectoryFormat":N,"outputNodeProperties":[…]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence, Set, Tuple

from oci_cache.digests import Digest
from oci_cache.reapi import remote_execution_pb2
from oci_cache.secret_masking.credentials import (
    Span,
    find_credential_arguments,
    find_credential_spans,
    merge_spans,
)
from oci_cache.secret_masking.masked_values import MaskingKey, mask_value
from oci_cache.secret_masking.names import is_secret_name

RECORD_SCHEMA = "pants-oci-cache/command-record/v1"
MIN_SCRUBBED_LENGTH = 4


class CommandRecordError(ValueError):
    """Bytes that are not a command record of a schema this version reads."""


@dataclass(frozen=True)
class EnvironmentEntry:
    name: str
    value: str
    masked: bool = False


@dataclass(frozen=True)
class CommandRecord:
    command: Digest
    masked_with: str
    masked_count: int
    arguments: Tuple[str, ...]
    masked_arguments: Tuple[int, ...]
    environment: Tuple[EnvironmentEntry, ...]
    platform: Tuple[Tuple[str, str], ...]
    working_directory: str
    output_paths: Tuple[str, ...]
    output_files: Tuple[str, ...]
    output_directories: Tuple[str, ...]
    output_directory_format: int
    output_node_properties: Tuple[str, ...]

    def environment_values(self) -> Dict[str, str]:
        """Name → value (masked values in their masked form): what a differ compares."""
        return {entry.name: entry.value for entry in self.environment}

    def to_bytes(self) -> bytes:
        document: Dict[str, Any] = {
            "schema": RECORD_SCHEMA,
            "command": f"{self.command.hash}/{self.command.size_bytes}",
            "maskedWith": self.masked_with,
            "maskedCount": self.masked_count,
            "arguments": list(self.arguments),
            "maskedArguments": list(self.masked_arguments),
            "environment": [_environment_json(entry) for entry in self.environment],
            "platform": [{"name": name, "value": value} for name, value in self.platform],
            "workingDirectory": self.working_directory,
            "outputPaths": list(self.output_paths),
            "outputFiles": list(self.output_files),
            "outputDirectories": list(self.output_directories),
            "outputDirectoryFormat": self.output_directory_format,
            "outputNodeProperties": list(self.output_node_properties),
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def record_command(
    command: remote_execution_pb2.Command,
    digest: Digest,
    key: MaskingKey,
    extra_names: Iterable[str] = (),
) -> CommandRecord:
    """The record of `command` (whose blob has `digest`), secrets masked with `key`."""
    extra = tuple(extra_names)
    found = _find_secrets(command, extra)
    secrets = sorted((s for s in found.secret_texts if len(s) >= MIN_SCRUBBED_LENGTH), key=len, reverse=True)
    masked_count = 0

    def masked(text: str, spans: Sequence[Span]) -> str:
        nonlocal masked_count
        all_spans = merge_spans([*spans, *_occurrences(text, secrets)])
        if not all_spans:
            return text
        masked_count += len(all_spans)
        pieces, position = [], 0
        for span in all_spans:
            pieces.append(text[position : span.start])
            pieces.append(mask_value(text[span.start : span.end], key))
            position = span.end
        pieces.append(text[position:])
        return "".join(pieces)

    arguments = []
    masked_arguments = []
    for index, argument in enumerate(command.arguments):
        text = masked(argument, found.argument_spans.get(index, ()))
        arguments.append(text)
        if text != argument:
            masked_arguments.append(index)
    environment = []
    for variable in command.environment_variables:
        if variable.name in found.secret_names and variable.value:
            masked_count += 1
            environment.append(EnvironmentEntry(variable.name, mask_value(variable.value, key), True))
        else:
            text = masked(variable.value, find_credential_spans(variable.value, extra))
            environment.append(EnvironmentEntry(variable.name, text, text != variable.value))
    platform = tuple(
        (prop.name, masked(prop.value, find_credential_spans(prop.value, extra))) for prop in command.platform.properties
    )
    working_directory = masked(command.working_directory, ())
    output_paths = tuple(masked(path, ()) for path in command.output_paths)
    output_files = tuple(masked(path, ()) for path in command.output_files)
    output_directories = tuple(masked(path, ()) for path in command.output_directories)
    return CommandRecord(
        command=digest,
        masked_with=key.key_id,
        masked_count=masked_count,
        arguments=tuple(arguments),
        masked_arguments=tuple(masked_arguments),
        environment=tuple(environment),
        platform=platform,
        working_directory=working_directory,
        output_paths=output_paths,
        output_files=output_files,
        output_directories=output_directories,
        output_directory_format=int(command.output_directory_format),
        output_node_properties=tuple(command.output_node_properties),
    )


def command_holds_secrets(command: remote_execution_pb2.Command, extra_names: Iterable[str] = ()) -> bool:
    """Whether `command` holds anything record_command would mask."""
    found = _find_secrets(command, tuple(extra_names))
    return bool(found.secret_texts)


def parse_command_record(data: bytes) -> CommandRecord:
    """The record in `data`; raises CommandRecordError."""
    try:
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("schema") != RECORD_SCHEMA:
            raise CommandRecordError(f"not a {RECORD_SCHEMA} record")
        hash_hex, _, size = str(document["command"]).partition("/")
        return CommandRecord(
            command=Digest.parse(hash_hex, int(size)),
            masked_with=str(document["maskedWith"]),
            masked_count=int(document["maskedCount"]),
            arguments=tuple(str(a) for a in document["arguments"]),
            masked_arguments=tuple(int(i) for i in document["maskedArguments"]),
            environment=tuple(
                EnvironmentEntry(str(e["name"]), str(e["value"]), bool(e.get("masked", False)))
                for e in document["environment"]
            ),
            platform=tuple((str(p["name"]), str(p["value"])) for p in document["platform"]),
            working_directory=str(document["workingDirectory"]),
            output_paths=tuple(str(p) for p in document["outputPaths"]),
            output_files=tuple(str(p) for p in document["outputFiles"]),
            output_directories=tuple(str(p) for p in document["outputDirectories"]),
            output_directory_format=int(document["outputDirectoryFormat"]),
            output_node_properties=tuple(str(p) for p in document["outputNodeProperties"]),
        )
    except CommandRecordError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise CommandRecordError(f"malformed command record ({type(error).__name__}: {error})") from None


@dataclass
class _Found:
    secret_names: Set[str]
    argument_spans: Dict[int, List[Span]]
    secret_texts: Set[str]


def _find_secrets(command: remote_execution_pb2.Command, extra: Tuple[str, ...]) -> _Found:
    secret_names: Set[str] = set()
    texts: Set[str] = set()
    for variable in command.environment_variables:
        if is_secret_name(variable.name, extra):
            secret_names.add(variable.name)
            if variable.value:
                texts.add(variable.value)
        else:
            texts.update(variable.value[s.start : s.end] for s in find_credential_spans(variable.value, extra))
    for prop in command.platform.properties:
        texts.update(prop.value[s.start : s.end] for s in find_credential_spans(prop.value, extra))
    argument_spans: Dict[int, List[Span]] = {}
    arguments = list(command.arguments)
    for found in find_credential_arguments(arguments, extra):
        argument_spans.setdefault(found.index, []).append(Span(found.start, found.end))
        texts.add(arguments[found.index][found.start : found.end])
    texts.discard("")
    return _Found(secret_names, argument_spans, texts)


def _occurrences(text: str, secrets: Sequence[str]) -> List[Span]:
    spans = []
    for secret in secrets:
        start = text.find(secret)
        while start >= 0:
            spans.append(Span(start, start + len(secret)))
            start = text.find(secret, start + len(secret))
    return spans


def _environment_json(entry: EnvironmentEntry) -> Dict[str, Any]:
    document: Dict[str, Any] = {"name": entry.name, "value": entry.value}
    if entry.masked:
        document["masked"] = True
    return document


__all__ = [
    "CommandRecord",
    "CommandRecordError",
    "EnvironmentEntry",
    "RECORD_SCHEMA",
    "command_holds_secrets",
    "parse_command_record",
    "record_command",
]
