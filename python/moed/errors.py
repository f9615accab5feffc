"""The exceptions of the moed client: the daemon's refusals and an unreachable daemon."""


class Error(Exception):
    """The daemon refused a request.  .status is the protocol's status name
    ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", ...), .message its reason."""

    def __init__(self, message, status="UNKNOWN"):
        super().__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message


class Unavailable(Error):
    """moed cannot be reached: no socket, connection refused or lost, a reply that
    is not the protocol, no answer within the timeout, or moed shutting down."""

    def __init__(self, message, status="UNAVAILABLE"):
        super().__init__(message, status)
