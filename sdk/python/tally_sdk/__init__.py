"""Tally's Python SDK: an async gRPC client over the buf-generated stubs (package `tally.v1`).

async with tally_sdk.Client("127.0.0.1:50051", api_key="...") as client:
    await client.ingest([tally_sdk.Event(type="prompt", subject="customer-1", data={"tokens": 42})])
    result = await client.query_meter("tokens_total", window_size="HOUR")
"""

from tally_sdk.client import Client, Event
from tally_sdk.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TallyError,
    UnauthenticatedError,
    UnavailableError,
)
from tally_sdk.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "AlreadyExistsError",
    "Client",
    "DeadlineExceededError",
    "Event",
    "FieldViolation",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "TallyError",
    "UnauthenticatedError",
    "UnavailableError",
]
