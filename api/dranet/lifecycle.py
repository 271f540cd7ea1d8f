"""Process lifecycle for a service: signals, clean stop, exit codes.

    async def serve(stop: asyncio.Event) -> None:
        await server.start()
        await stop.wait()
        await server.stop(grace=5)

    def main() -> None:
        run(serve, service="netlink-agent")

SIGTERM (the kubelet stopping the pod) or SIGINT sets the stop event; `main`
is expected to finish its work and return, and the process exits 0. A second
signal cancels `main` (an operator insisting). A DranetError ends the process
with one line on stderr and exit code 1; other exceptions keep their
traceback, which is what a bug needs.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, Protocol, TypeVar

from dranet.errors import DranetError
from dranet.logs import setup_logging

Main = Callable[[asyncio.Event], Awaitable[None]]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def error_line(service: str, exc: BaseException) -> str:
    """`dranet-<service>: error: <message>` on one line."""
    prog = service if service.startswith("dranet") else f"dranet-{service}"
    message = " ".join(str(exc).split()) or type(exc).__name__
    return f"{prog}: error: {message}"


async def _supervise(main: Main) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(main(stop))

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        else:
            stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        await task
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def run_until_stopped(main: Main, *, service: str) -> int:
    """Run `main` until it returns; the exit code (0 clean, 1 on DranetError)."""
    try:
        asyncio.run(_supervise(main))
    except DranetError as exc:
        print(error_line(service, exc), file=sys.stderr, flush=True)
        return 1
    except asyncio.CancelledError:
        print(error_line(service, RuntimeError("stopped by a second signal")), file=sys.stderr)
        return 1
    return 0


def run(main: Main, *, service: str) -> NoReturn:
    """Run `main` as the whole process and exit with its code."""
    sys.exit(run_until_stopped(main, service=service))


class LoggedSettings(Protocol):
    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> str: ...


S = TypeVar("S", bound=LoggedSettings)


def service_main(
    service: str,
    argv: Sequence[str] | None,
    load_settings: Callable[[Sequence[str]], S],
    serve: Callable[[S, asyncio.Event], Awaitable[None]],
) -> NoReturn:
    """The body of every service's console script.

    A bad flag or environment variable is one line on stderr and exit 2, as
    argparse does; then logging is set up and `serve` runs until SIGTERM.
    """
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    except DranetError as exc:
        print(error_line(service, exc), file=sys.stderr)
        sys.exit(2)
    setup_logging(service, settings.log_level, settings.log_format)
    run(lambda stop: serve(settings, stop), service=service)
