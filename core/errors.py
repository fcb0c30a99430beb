"""Errors a user can cause and fix. The CLI prints them without a traceback."""


class PreciseError(Exception):
    """A user-facing error: bad input, bad configuration, a missing file.

    The message must say what is wrong and, where possible, what to do about it.
    """
