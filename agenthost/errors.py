"""The exception tree (layer 0). Only ``api/errors.py`` turns these into HTTP.

::

    AgentHostError                      500 api_error (never raised for bad input)
    ├── InvalidRequest                  400 invalid_request_error
    │   └── NotSupported                400 a documented field agenthost does not implement yet
    ├── AuthenticationFailed            401 authentication_error
    ├── PermissionDenied                403 permission_error
    ├── NotFound                        404 not_found_error
    ├── Conflict                        409 invalid_request_error, x-should-retry: false
    │   ├── MemoryPathConflict          409 memory_path_conflict_error (+ conflicting_memory_id, conflicting_path)
    │   └── MemoryPreconditionFailed    409 memory_precondition_failed_error
    ├── PreconditionFailed              412 invalid_request_error (a compare-and-set lost)
    ├── PayloadTooLarge                 413 request_too_large
    ├── RateLimited                     429 rate_limit_error, retry-after
    └── Unavailable                     503 api_error, x-should-retry: true, retry-after (the database went away)
        └── InDoubt                     503 api_error, x-should-retry: false (a write that may have committed)

Each class knows its status, wire ``type`` and whether a client should retry;
an instance may carry an ``error_code`` that the SDK maps to a finer exception,
``fields``: extra keys of the wire ``error`` object itself (beside ``type`` and ``message``), and
``retry_after``: the seconds a client should wait, sent as the ``retry-after`` header.
"""

from __future__ import annotations


class AgentHostError(Exception):
    """Base of every error agenthost reports on the wire."""

    status: int = 500
    wire_type: str = "api_error"
    should_retry: bool | None = None
    retry_after: float | None = None

    def __init__(self, message: str, *, error_code: str | None = None, details: dict[str, object] | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.details = details
        self.fields: dict[str, object] = {}


class InvalidRequest(AgentHostError):
    """The request is malformed or breaks a rule; the message names the field."""

    status = 400
    wire_type = "invalid_request_error"


class NotSupported(InvalidRequest):
    """A field of the official contract that agenthost refuses instead of silently ignoring."""

    def __init__(self, field: str, what: str | None = None):
        super().__init__(f"{field}: {what or 'this field'} is not supported by this agenthost server yet")


class AuthenticationFailed(AgentHostError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    wire_type = "authentication_error"


class PermissionDenied(AgentHostError):
    """The key is valid but may not do this."""

    status = 403
    wire_type = "permission_error"


class NotFound(AgentHostError):
    """Unknown id, or an id of another workspace (the two are indistinguishable)."""

    status = 404
    wire_type = "not_found_error"


class Conflict(AgentHostError):
    """A deterministic conflict; retrying the same request cannot help."""

    status = 409
    wire_type = "invalid_request_error"
    should_retry = False


class MemoryPathConflict(Conflict):
    """A memory create or rename onto a path that another memory holds, or that overlaps one.

    The error object names the memory in the way: ``conflicting_memory_id`` and ``conflicting_path``
    (the requested path, or the path of a memory that is its ancestor or descendant).
    """

    wire_type = "memory_path_conflict_error"

    def __init__(self, message: str, *, conflicting_memory_id: str, conflicting_path: str):
        super().__init__(message)
        self.fields = {"conflicting_memory_id": conflicting_memory_id, "conflicting_path": conflicting_path}


class MemoryPreconditionFailed(Conflict):
    """A memory's content is not the one the caller's ``content_sha256`` expected; nothing changed."""

    wire_type = "memory_precondition_failed_error"


class PreconditionFailed(AgentHostError):
    """A compare-and-set found another value than the caller expected (a work heartbeat)."""

    status = 412
    wire_type = "invalid_request_error"
    should_retry = False


class PayloadTooLarge(AgentHostError):
    """The request body is over the configured limit."""

    status = 413
    wire_type = "request_too_large"
    should_retry = False


class RateLimited(AgentHostError):
    """Too much at once from one key; the same request may succeed after ``retry_after`` seconds."""

    status = 429
    wire_type = "rate_limit_error"
    should_retry = True

    def __init__(self, message: str, *, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(AgentHostError):
    """A dependency (the database) is unreachable for now; the same request may succeed later."""

    status = 503
    wire_type = "api_error"
    should_retry = True
    retry_after = 1.0


class InDoubt(Unavailable):
    """The database connection broke while a write ran: it may have been applied. Never retried blindly."""

    should_retry = False
    retry_after = None
