"""`dranet`: the operator's command line.

    dranet health --socket /run/dranet/agent/agent.sock [--service NAME] [--timeout 2]

exits 0 when the service answers SERVING, 1 otherwise, saying what to check.
Each subcommand is a `register_*` function adding a subparser whose `run`
default returns the exit code; `status` and `demo` plug in the same way.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PROG = "dranet"
Command = Callable[[argparse.Namespace], int]


def check_health(socket_path: Path, service: str = "", timeout: float = 2.0) -> str | None:
    """None when `service` at `socket_path` is SERVING, else what is wrong and what to check."""
    try:
        mode = socket_path.stat().st_mode
    except FileNotFoundError:
        return f"no socket at {socket_path}: is the service running and the volume mounted?"
    except PermissionError:
        return f"cannot see {socket_path}: permission denied on its directory; run as its group"
    if not stat.S_ISSOCK(mode):
        return f"{socket_path} is not a socket: check --socket"
    if not os.access(socket_path, os.W_OK):
        return f"permission denied on {socket_path}: run as its owner or group (or root)"
    name = repr(service) if service else "the server"
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return f"{socket_path} does not know service {service!r}: check --service"
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return (
                    f"no answer from {socket_path} within {timeout:g}s: "
                    "the service may be stuck; check its logs"
                )
            return (
                f"cannot reach {socket_path} ({code.name}: {exc.details()}): "
                "is the service running? a stale socket stays after a crash"
            )
    if reply.status == health_pb2.HealthCheckResponse.SERVING:
        return None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return (
        f"{name} at {socket_path} is {status}: "
        "it is starting, stopping or unhealthy; check its logs"
    )


def _health(args: argparse.Namespace) -> int:
    problem = check_health(Path(args.socket), args.service, args.timeout)
    if problem is not None:
        print(f"{PROG} health: {problem}", file=sys.stderr)
        return 1
    print(f"{args.socket}: SERVING" + (f" ({args.service})" if args.service else ""))
    return 0


def register_health(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "health",
        help="ask a dranet service whether it is serving (gRPC health check)",
        description="Exit 0 when the service on PATH reports SERVING, 1 otherwise.",
    )
    parser.add_argument("--socket", required=True, metavar="PATH", help="the service's socket")
    parser.add_argument(
        "--service", default="", metavar="NAME", help='service name ("" = the whole server)'
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, metavar="S", help="seconds to wait (default 2)"
    )
    parser.set_defaults(run=_health)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Operate the dranet network driver.")
    commands = parser.add_subparsers(dest="command", required=True)
    register_health(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
