"""The OpenTelemetry logs source's records, from OTLP messages built in the test."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from adapters.collectors.otel_logs import records

# 2024-12-31T23:59:59.999999999Z: the last nanosecond of a year (and of a month, a day, an hour).
LAST_NANOSECOND_OF_2024 = 1_735_689_599_999_999_999


def export(time_unix_nano: int, observed_time_unix_nano: int = 0) -> logs_service_pb2.ExportLogsServiceRequest:
    record = logs_pb2.LogRecord(time_unix_nano=time_unix_nano, observed_time_unix_nano=observed_time_unix_nano)
    scope_logs = logs_pb2.ScopeLogs(log_records=[record])
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(scope_logs=[scope_logs])])


def test_a_log_time_is_never_rounded_into_the_next_period() -> None:
    # A record logged in the last microsecond of 2024 is 2024's usage: rounding its nanoseconds
    # up (through a float) dated it 2025-01-01T00:00:00, into the next day, month and invoice.
    (record,) = records(export(LAST_NANOSECOND_OF_2024, LAST_NANOSECOND_OF_2024))
    assert record.time.year == 2024
    assert record.values["time"] == "2024-12-31T23:59:59.999Z"
    assert record.values["observed_time"] == "2024-12-31T23:59:59.999Z"
    # Sub-microsecond digits are dropped, never rounded: 1.9999995 s after the epoch is 1.999999 s.
    (record,) = records(export(1_999_999_500))
    assert record.time.microsecond == 999_999
