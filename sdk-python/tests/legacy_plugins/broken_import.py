"""A shotgunEvents plugin that fails while it is imported: the host answers `fatal` naming this
file and the error, and the daemon keeps the plugin disabled until the file changes."""

raise ImportError("broken_import.py fails at import on purpose")


def registerCallbacks(reg):  # never reached
    pass
