"""The one exception type the command-line tools turn into a one-line message and exit 2."""


class LmkError(Exception):
    """A problem with the user's input (files, flags, models) rather than a bug in lmk."""
