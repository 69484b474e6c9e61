"""Storage: one small interface for blobs and one for action results, with every
concern (disk persistence, completeness checks, registry fallback) in a module
of its own that implements or wraps those interfaces."""
