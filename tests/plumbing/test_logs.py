from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from dranet.errors import SettingsError
from dranet.logs import current_keys, log_context, setup_logging

pytestmark = pytest.mark.usefixtures("restore_root_logger")
log = logging.getLogger("dranet.test")


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_context_keys_appear_in_json_logs() -> None:
    out = io.StringIO()
    setup_logging("netlink-agent", "debug", "json", stream=out)
    with log_context(pod="default/web-0", claim="uid-1"):
        log.info("attached %s", "eth1", extra={"device": "eth1"})
    log.info("outside")

    inside, outside = json_lines(out)
    assert inside["msg"] == "attached eth1"
    assert inside["service"] == "netlink-agent"
    assert inside["level"] == "info"
    assert inside["logger"] == "dranet.test"
    assert (inside["pod"], inside["claim"], inside["device"]) == ("default/web-0", "uid-1", "eth1")
    assert "pod" not in outside and "claim" not in outside


def test_nested_contexts_merge_and_restore() -> None:
    with log_context(pod="a"):
        with log_context(claim="c", pod="b"):
            assert current_keys() == {"pod": "b", "claim": "c"}
        assert current_keys() == {"pod": "a"}
    assert current_keys() == {}


async def test_each_task_keeps_its_own_keys() -> None:
    out = io.StringIO()
    setup_logging("nri-hook", fmt="json", stream=out)

    async def handle(pod: str) -> None:
        with log_context(pod=pod):
            await asyncio.sleep(0.01)  # interleave the two tasks
            log.info("event")

    await asyncio.gather(handle("p1"), handle("p2"))
    assert sorted(line["pod"] for line in json_lines(out)) == ["p1", "p2"]


def test_trace_id_added_when_a_span_is_active() -> None:
    out = io.StringIO()
    setup_logging("kubelet-plugin", fmt="json", stream=out)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("prepare") as span:
        log.info("in span")
    log.info("no span")

    in_span, no_span = json_lines(out)
    context = span.get_span_context()
    assert in_span["trace_id"] == format(context.trace_id, "032x")
    assert in_span["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in no_span


def test_text_format_has_keys_and_quotes_spaces() -> None:
    out = io.StringIO()
    setup_logging("netlink-agent", fmt="text", stream=out)
    with log_context(pod="ns/p"):
        log.warning("slow", extra={"reason": "two words"})
    line = out.getvalue().strip()
    assert " WARNING netlink-agent dranet.test: slow " in line
    assert line.endswith('pod=ns/p reason="two words"')


def test_setup_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("a", fmt="json", stream=first)
    setup_logging("a", fmt="json", stream=second)
    log.info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


def test_level_filters_records() -> None:
    out = io.StringIO()
    setup_logging("a", "warning", "json", stream=out)
    log.info("hidden")
    log.error("shown")
    assert [line["msg"] for line in json_lines(out)] == ["shown"]


@pytest.mark.parametrize(("level", "fmt"), [("loud", "text"), ("info", "xml")])
def test_bad_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(SettingsError, match="unknown log"):
        setup_logging("a", level, fmt)
