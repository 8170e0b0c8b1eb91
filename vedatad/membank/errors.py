"""Memory-bank errors; every message names the bank path, and the video / chunk at fault."""


class BankError(RuntimeError):
    """A memory-bank problem; the message names the bank path and the video."""


class BankReadOnlyError(BankError):
    """A write to a bank opened read-only or frozen."""


class BankFullError(BankError):
    """The disk is full: nothing was changed (the previous chunks are intact)."""


class BankCorruptError(BankError):
    """Stored bytes fail their checksum or point outside the file."""


class BankLockedError(BankError):
    """Another job holds the bank's writer lock; the message names it."""
