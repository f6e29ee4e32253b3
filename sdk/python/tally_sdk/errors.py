"""Errors the client raises: one root, one class per gRPC status a caller handles differently.

The server attaches google.rpc details to its statuses (BadRequest field violations, ErrorInfo);
they are decoded here so callers read `error.violations` instead of parsing status messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str
    reason: str = ""


class TallyError(Exception):
    """A call to Tally failed. `code` is the gRPC status; `violations` lists bad fields, if any."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        violations: tuple[FieldViolation, ...] = (),
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.violations = violations
        self.reason = reason

    def __str__(self) -> str:
        if all(v.description in self.message for v in self.violations):
            return self.message
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        return f"{self.message} ({fields})"


class InvalidArgumentError(TallyError):
    """The request was rejected by validation; see `violations`."""


class NotFoundError(TallyError):
    pass


class AlreadyExistsError(TallyError):
    pass


class UnauthenticatedError(TallyError):
    """No API key, or one the server does not accept."""


class PermissionDeniedError(TallyError):
    pass


class ResourceExhaustedError(TallyError):
    """A request over a size limit (events per batch, bytes per event)."""


class UnavailableError(TallyError):
    """The server could not be reached, or could not make the work durable in time; retry later."""


class DeadlineExceededError(TallyError):
    pass


_CLASSES: dict[grpc.StatusCode, type[TallyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def from_rpc_error(error: grpc.aio.AioRpcError) -> TallyError:
    """The TallyError for a failed call, with the server's google.rpc details decoded."""
    code = error.code()
    violations: list[FieldViolation] = []
    reason = ""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(
                    FieldViolation(v.field, v.description, v.reason) for v in bad_request.field_violations
                )
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
    cls = _CLASSES.get(code, TallyError)
    return cls(error.details() or code.name, code, tuple(violations), reason)
