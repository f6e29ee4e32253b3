"""Maps domain errors to gRPC statuses (with google.rpc details) and to RFC 7807 problem bodies.

The one place where error kinds meet transports: servicers raise domain errors and never build a
status themselves. Native gRPC clients get the status code plus google.rpc.BadRequest / ErrorInfo
details; REST clients (through Envoy) also get the problem+json body OpenMeter sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from adapters.invalid_text import is_invalid_text
from adapters.transient import is_transient
from domain.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    NotImplementedFeatureError,
    PayloadTooLargeError,
    PreconditionFailedError,
    TallyError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)

log = structlog.get_logger(__name__)

ERROR_DOMAIN = "tally.dev"


@dataclass(frozen=True, slots=True)
class Mapping:
    grpc_code: grpc.StatusCode
    http_status: int
    title: str


_MAPPINGS: list[tuple[type[TallyError], Mapping]] = [
    (ValidationError, Mapping(grpc.StatusCode.INVALID_ARGUMENT, 400, "Bad Request")),
    (NotFoundError, Mapping(grpc.StatusCode.NOT_FOUND, 404, "Not Found")),
    (ConflictError, Mapping(grpc.StatusCode.ALREADY_EXISTS, 409, "Conflict")),
    (PayloadTooLargeError, Mapping(grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "Payload Too Large")),
    (UnauthenticatedError, Mapping(grpc.StatusCode.UNAUTHENTICATED, 401, "Unauthorized")),
    (ForbiddenError, Mapping(grpc.StatusCode.PERMISSION_DENIED, 403, "Forbidden")),
    (PreconditionFailedError, Mapping(grpc.StatusCode.FAILED_PRECONDITION, 412, "Precondition Failed")),
    (UnavailableError, Mapping(grpc.StatusCode.UNAVAILABLE, 503, "Service Unavailable")),
    (NotImplementedFeatureError, Mapping(grpc.StatusCode.UNIMPLEMENTED, 501, "Not Implemented")),
]
_INTERNAL = Mapping(grpc.StatusCode.INTERNAL, 500, "Internal Server Error")


def mapping_for(error: BaseException) -> Mapping:
    for kind, mapping in _MAPPINGS:
        if isinstance(error, kind):
            return mapping
    return _INTERNAL


def as_domain_error(error: BaseException) -> TallyError | None:
    """The domain error to answer with: the error itself, UnavailableError for a transient
    infrastructure failure (so clients retry), ValidationError for text a store cannot hold (NUL
    characters), or None for a bug (answered as INTERNAL)."""
    if isinstance(error, TallyError):
        return error
    if is_transient(error):
        return UnavailableError(f"a backing store is unavailable ({type(error).__name__}); retry")
    if is_invalid_text(error):
        return ValidationError.single("request", "text must not contain NUL characters (\\u0000)", "invalid_character")
    return None


def problem_body(error: TallyError, mapping: Mapping, instance: str | None) -> dict[str, Any]:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": mapping.title,
        "status": mapping.http_status,
        "detail": error.message,
    }
    if instance:
        problem["instance"] = instance
    extensions: dict[str, Any] = {}
    if error.code and not isinstance(error, ConflictError):
        # OpenMeter's billing errors (billing.EncodeValidationIssues) put their first issue's code,
        # message and severity at the top of `extensions`. A 400's issue is listed in
        # validationErrors as well, as Tally's other 400s list theirs.
        violations = error.violations if isinstance(error, ValidationError) else ()
        first = next((v for v in violations if v.code == error.code), None)
        extensions.update(code=error.code, message=first.message if first else error.message, severity="critical")
        if isinstance(error, ValidationError) and not violations:
            extensions["validationErrors"] = [{"code": error.code, "message": error.message, "severity": "critical"}]
    if isinstance(error, ValidationError) and error.violations:
        extensions["validationErrors"] = [
            {"field": v.field, "message": v.message, "code": v.code, "severity": "critical"} for v in error.violations
        ]
    if isinstance(error, ConflictError) and error.conflicting_id:
        extensions["conflictingEntityId"] = error.conflicting_id
    if isinstance(error, ConflictError) and error.code:
        extensions["validationErrors"] = [{"code": error.code, "message": error.message, "severity": "critical"}]
    if extensions:
        problem["extensions"] = extensions
    return problem


def problem_response(error: TallyError, instance: str | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, problem+json body) for a domain error: for HTTP served outside Envoy (the
    collector's relay), answering exactly as Tally's REST API does."""
    mapping = mapping_for(error)
    return mapping.http_status, problem_body(error, mapping, instance)


def rpc_status(error: TallyError, mapping: Mapping) -> status_pb2.Status:
    status = status_pb2.Status(code=mapping.grpc_code.value[0], message=error.message)
    if isinstance(error, ValidationError):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.message, reason=v.code)
                for v in error.violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad_request)
        status.details.append(detail)
    metadata = {"kind": type(error).__name__}
    if isinstance(error, ConflictError) and error.conflicting_id:
        metadata["conflictingEntityId"] = error.conflicting_id
    if error.code:
        metadata["code"] = error.code
    info = error_details_pb2.ErrorInfo(reason=type(error).__name__, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status.details.append(detail)
    return status


def trailing_metadata(error: TallyError, rest: bool, instance: str | None) -> tuple[tuple[str, str | bytes], ...]:
    mapping = mapping_for(error)
    metadata: list[tuple[str, str | bytes]] = [
        ("grpc-status-details-bin", rpc_status(error, mapping).SerializeToString()),
    ]
    if rest:
        # Header values must be printable ASCII, hence ensure_ascii (\uXXXX escapes) and no newlines.
        body = json.dumps(problem_body(error, mapping, instance), ensure_ascii=True, separators=(",", ":"))
        metadata.append(("x-tally-problem", body))
        metadata.append(("x-tally-status", str(mapping.http_status)))
    return tuple(metadata)
