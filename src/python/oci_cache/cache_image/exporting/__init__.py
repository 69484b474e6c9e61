"""The export side: what to add, merged with the image at the ref, pruned, packed into layers,
and published (the manifest last)."""
