"""Secrets never leave the machine: finding them in REAPI Commands and masking them.

The public API (each module's docstring has the rules):

- `is_secret_name(name, extra_names)` — a variable, flag or header name that looks
  secret (names.py);
- `find_credential_spans(text, extra_names)` and
  `find_credential_arguments(arguments, extra_names)` — credential-looking parts of
  text and argument lists (credentials.py);
- `MaskingKey`, `load_or_create_masking_key(path)`, `mask_value(value, key)` — a
  stable printable mask, `<masked:hmac:…>`, keyed by a local secret (masked_values.py);
- `record_command(command, digest, key, extra_names)` → `CommandRecord`, its JSON
  form and `parse_command_record` — a Command with its secrets masked
  (command_records.py). Any Command can be turned into a record, so two Commands
  compare value by value through their records without either value in clear.

Pure functions, no I/O but the key file: usable by the exporter, the daemon and the
command line alike.
"""

from oci_cache.secret_masking.command_records import (
    RECORD_SCHEMA,
    CommandRecord,
    CommandRecordError,
    EnvironmentEntry,
    command_holds_secrets,
    parse_command_record,
    record_command,
)
from oci_cache.secret_masking.credentials import (
    ArgumentSpan,
    Span,
    find_credential_arguments,
    find_credential_spans,
)
from oci_cache.secret_masking.masked_values import (
    MASKED_PATTERN,
    MASKING_KEY_FILE,
    MaskingKey,
    is_masked,
    load_or_create_masking_key,
    mask_value,
)
from oci_cache.secret_masking.names import SECRET_NAME_PARTS, is_secret_name, parse_secret_names

__all__ = [
    "ArgumentSpan",
    "CommandRecord",
    "CommandRecordError",
    "EnvironmentEntry",
    "MASKED_PATTERN",
    "MASKING_KEY_FILE",
    "MaskingKey",
    "RECORD_SCHEMA",
    "SECRET_NAME_PARTS",
    "Span",
    "command_holds_secrets",
    "find_credential_arguments",
    "find_credential_spans",
    "is_masked",
    "is_secret_name",
    "load_or_create_masking_key",
    "mask_value",
    "parse_command_record",
    "record_command",
]
