"""The one exception type that reaches the user as a one-line message (exit status 2)."""


class UserError(Exception):
    """Something the user asked for cannot be done; the message says what was wrong and what to do."""
