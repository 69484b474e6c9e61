"""Starting, finding and talking to the `oci-cache serve` daemon from another process.

Everything in this package uses only the standard library (and the stdlib-only parts
of oci_cache): the Pants plugin imports it inside Pants' own interpreter, where
grpcio, protobuf, zstandard and urllib3 are usually not importable.
"""
