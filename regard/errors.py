"""User-facing errors.

Anything that is the user's mistake (a missing file, a bad config key, a corrupt
checkpoint) raises :class:`RegardError`. The command line prints its message
without a traceback; the library lets callers catch it.
"""


class RegardError(Exception):
    """An error caused by input or configuration, with a message for a person."""


class RegardWarning(UserWarning):
    """Something that works but not as the user likely wants (bf16 on a CPU without bf16
    instructions); the command line prints it as one ``regard: warning:`` line."""


class Interrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM after saving ``last/`` (resume with --resume)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the command line's handler so that every
    ``finally`` and cleanup runs (a temporary file is removed) as for Ctrl-C."""
