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

from oci_cache.lazy_exports import lazy_exports

# Loaded on first use: `names` alone (what parsing a cache-to entry needs) does not pull
# in the protobuf code.
_EXPORTS = {
    "ArgumentSpan": "credentials",
    "CommandRecord": "command_records",
    "CommandRecordError": "command_records",
    "EnvironmentEntry": "command_records",
    "MASKED_PATTERN": "masked_values",
    "MASKING_KEY_FILE": "masked_values",
    "MaskingKey": "masked_values",
    "RECORD_SCHEMA": "command_records",
    "SECRET_NAME_PARTS": "names",
    "Span": "credentials",
    "command_holds_secrets": "command_records",
    "find_credential_arguments": "credentials",
    "find_credential_spans": "credentials",
    "is_masked": "masked_values",
    "is_secret_name": "names",
    "load_or_create_masking_key": "masked_values",
    "mask_value": "masked_values",
    "parse_command_record": "command_records",
    "parse_secret_names": "names",
    "record_command": "command_records",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
