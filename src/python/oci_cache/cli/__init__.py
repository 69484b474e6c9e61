"""The `oci-cache` command. Each subcommand is one module named `*_command.py` in
this package (see main.py for what such a module defines)."""
