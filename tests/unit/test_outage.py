"""SPEC §7: a shared store's failures are counted each time and logged once a minute at most
(in an outage every call in flight fails at once), with the exception's type and no more."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.redis_client import Outage


def test_every_failure_is_counted_and_one_a_minute_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    failures = Counter("failures", "", registry=CollectorRegistry())
    outage = Outage(logging.getLogger("gateway.test"), failures, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="gateway.test"):
        for _ in range(50):
            outage.failed(TimeoutError("secret-host:6379"), "store unreachable (%s); %s", "open")
        now[0] += 59
        outage.failed(ConnectionError(), "store unreachable (%s); %s", "open")
        now[0] += 1  # a minute after the first line
        outage.failed(ConnectionError(), "store unreachable (%s); %s", "open")
    assert failures._value.get() == 52
    assert [record.getMessage() for record in caplog.records] == [
        "store unreachable (TimeoutError); open",
        "store unreachable (ConnectionError); open",
    ]  # the type only: an exception's text may name the host, a password in its URL
    Outage(logging.getLogger("gateway.test"), None).failed(OSError(), "%s")  # nothing counts
