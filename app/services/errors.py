class UserError(Exception):
    """Bad usage or bad input: the message is shown to the user as is (CLI exit code 2)."""


class NotFound(UserError):
    """An id that does not exist (or was deleted)."""


class ProjectNotFound(NotFound):
    """The project itself does not exist or was deleted (an editor open on it has nothing left
    to edit), as opposed to one of its clips or regions."""


class OperationFailed(Exception):
    """The operation ran and failed (CLI exit code 1)."""


class Cancelled(Exception):
    """Work stopped at the user's request (an import): nothing to report as an error."""
