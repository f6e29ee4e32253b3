"""A ClickHouse server URL's options: the client's timeouts, and a clear refusal of anything else.
That a timeout reaches the client is shown by tests/integration/test_sink_recovery.py (a one-second
`send_receive_timeout` gives up on an insert the server holds)."""

from __future__ import annotations

import pytest

from adapters.clickhouse.client import connect


def test_an_unknown_option_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'retries' is not known; allowed: connect_timeout, send_receive_timeout"):
        connect("http://default@127.0.0.1:1/db?retries=3")


@pytest.mark.parametrize("value", ["", "0", "-1", "1.5", "ten"])
def test_a_timeout_must_be_whole_seconds_above_zero(value: str) -> None:
    with pytest.raises(ValueError, match=rf"send_receive_timeout='{value}': a whole number of seconds above 0"):
        connect(f"http://default@127.0.0.1:1/db?send_receive_timeout={value}")
