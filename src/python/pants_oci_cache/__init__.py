"""The Pants backend of pants-oci-cache: add `pants_oci_cache` to backend_packages."""
