"""The import side: cache-from images loaded, kept current, and read through (blobs fetched
lazily and verified into the local store)."""
