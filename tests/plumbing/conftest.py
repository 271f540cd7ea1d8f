"""Helpers for the plumbing tests: a tiny bytes-in/bytes-out gRPC service."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace

from dranet.grpcserver import ServicerAdder

ECHO_SERVICE = "test.Echo"
SAY = f"/{ECHO_SERVICE}/Say"
COUNT = f"/{ECHO_SERVICE}/Count"


async def _say(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    if request == b"fail":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
    if request == b"crash":
        raise RuntimeError("a bug in the handler")
    return request


async def _count(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    for i in range(int(request)):
        yield str(i).encode()


def echo_adder(seen: list[Any] | None = None) -> ServicerAdder:
    """Adds test.Echo: Say echoes (b"fail" aborts, b"crash" raises), Count streams n items.

    `seen` receives the span that is current inside each Say call.
    """

    async def say(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if seen is not None:
            seen.append(trace.get_current_span())
        return await _say(request, context)

    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Say": grpc.unary_unary_rpc_method_handler(say),
            "Count": grpc.unary_stream_rpc_method_handler(_count),
        },
    )
    return lambda server: server.add_generic_rpc_handlers((handler,))


@pytest.fixture
def restore_root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
