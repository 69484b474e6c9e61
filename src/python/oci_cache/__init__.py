"""pants-oci-cache: a REAPI cache server whose durable home is an OCI registry."""

__version__ = "0.1.0"
