"""The one base class of failures a user can fix (bad data, a damaged file, a bad configuration, a
diverged run, stale results): a stage reports them in one actionable line instead of a traceback."""


class UserError(Exception):
    """An error whose message says what to change; anything else is a bug and keeps its traceback."""
