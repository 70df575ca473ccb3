class UserError(Exception):
    """Bad usage or bad input: the message is shown to the user as is (CLI exit code 2)."""


class NotFound(UserError):
    """An id that does not exist (or was deleted)."""


class ProjectNotFound(NotFound):
    """The project itself does not exist or was deleted (an editor open on it has nothing left
    to edit), as opposed to one of its clips or regions."""


class OperationFailed(Exception):
    """The operation ran and failed (CLI exit code 1)."""


def unexpected_words(exc: BaseException) -> str:
    """An error no code path expected, for the user: its kind and its first line (not a database
    library's SQL and values on the lines after)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"


class Cancelled(Exception):
    """Work stopped at the user's request (an import): nothing to report as an error."""
