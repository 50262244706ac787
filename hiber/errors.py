"""One exception tree for everything hiber can refuse or fail at.

Every message a user sees says what failed, for which pid/fd/file/address,
and what to do about it.  The command line prints ``str(exc)`` as one line
and exits 1.
"""


class HiberError(Exception):
    """Base of every error hiber raises on purpose."""


class ImageError(HiberError):
    """An image file is missing, malformed or inconsistent.

    Carries the file and the byte offset where reading went wrong, so a
    corrupt image dir can be inspected with a hex dump.
    """

    def __init__(self, path, offset, reason):
        self.path = str(path)
        self.offset = offset
        self.reason = reason
        where = self.path if offset is None else f"{self.path} at byte {offset}"
        super().__init__(f"{where}: {reason}")


class UsageError(HiberError):
    """The command line or API call asked for something inconsistent."""


class RestoreError(HiberError):
    """A restore refused before creating anything, or failed (and removed
    what it had created)."""
