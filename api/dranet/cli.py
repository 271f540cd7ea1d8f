"""`dranet`: the operator's command line.

    dranet health --socket /run/dranet/agent/agent.sock [--service NAME] [--timeout 2]

exits 0 when the service answers SERVING, 1 otherwise, saying what to check.

    dranet status [--agent-socket PATH] [--state-db PATH] [--json] [--timeout 5]

shows this node's devices, prepared claims and attachments from the netlink
agent and the claim-state store (opened read-only); exits 1 when either
cannot be read, after showing what the other one knows.

Each subcommand is a `register_*` function adding a subparser whose `run`
default returns the exit code. Other installed packages add subcommands the
same way through the entry-point group `dranet.cli` (each entry point is such
a `register` function); `dranet demo` comes from `dranet_sandbox.demo` so, as
the import contract requires, this package never imports the sandbox.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dranet import status
from dranet.agent.v1 import agent_pb2, agent_pb2_grpc
from dranet.errors import StoreError
from dranet.paths import DEFAULT_AGENT_SOCKET
from dranet.store import DEFAULT_PATH as DEFAULT_STATE_DB
from dranet.store import AttachmentRecord, ClaimRecord, Role, Store

PROG = "dranet"
Command = Callable[[argparse.Namespace], int]
ENTRY_POINT_GROUP = "dranet.cli"
# Where the DaemonSet puts the agent's socket (the services' default too).


def socket_problem(socket_path: Path, flag: str = "--socket") -> str | None:
    """None when `socket_path` is a socket this user may connect to, else what to check."""
    try:
        mode = socket_path.stat().st_mode
    except FileNotFoundError:
        return f"no socket at {socket_path}: is the service running and the volume mounted?"
    except PermissionError:
        return f"cannot see {socket_path}: permission denied on its directory; run as its group"
    if not stat.S_ISSOCK(mode):
        return f"{socket_path} is not a socket: check {flag}"
    if not os.access(socket_path, os.W_OK):
        return f"permission denied on {socket_path}: run as its owner or group (or root)"
    return None


def check_health(socket_path: Path, service: str = "", timeout: float = 2.0) -> str | None:
    """None when `service` at `socket_path` is SERVING, else what is wrong and what to check."""
    problem = socket_problem(socket_path)
    if problem is not None:
        return problem
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


# --- status -------------------------------------------------------------------------

AgentAnswer = tuple[list[agent_pb2.Device], list[agent_pb2.Attachment]]
StoreContents = tuple[list[ClaimRecord], list[AttachmentRecord]]


def query_agent(socket_path: Path, timeout: float) -> AgentAnswer | str:
    """The agent's devices and attachments, or what is wrong and what to check."""
    where = "check --agent-socket / DRANET_AGENT_SOCKET"
    problem = socket_problem(socket_path, "--agent-socket")
    if problem is not None:
        return f"{problem} ({where})"
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        stub = agent_pb2_grpc.NetlinkAgentStub(channel)
        try:
            devices = stub.ListDevices(agent_pb2.ListDevicesRequest(), timeout=timeout)
            attachments = stub.ListAttachments(agent_pb2.ListAttachmentsRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNIMPLEMENTED:
                return (
                    f"{socket_path} does not serve the netlink agent API "
                    f"(dranet.agent.v1.NetlinkAgent): {where}"
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return (
                    f"the netlink agent at {socket_path} did not answer within {timeout:g}s: "
                    "it may be stuck; check the netlink-agent container's logs"
                )
            return (
                f"cannot reach the netlink agent at {socket_path} ({code.name}: {exc.details()}): "
                f"is the netlink-agent container running? check `{PROG} health --socket "
                f"{socket_path}` and its logs; a stale socket stays after a crash"
            )
    return list(devices.devices), list(attachments.attachments)


def read_store(path: Path) -> StoreContents | str:
    """Claims and attachment rows from the store opened read-only, or what to check."""
    try:
        with Store(path, role=Role.READER) as store:
            return store.list_claims(), store.list_attachments()
    except StoreError as exc:
        return f"{exc}; the path comes from --state-db / DRANET_STATE_DB"


def _status(args: argparse.Namespace) -> int:
    answer = query_agent(Path(args.agent_socket), args.timeout)
    contents = read_store(Path(args.state_db))
    report = status.build_report(
        agent_socket=args.agent_socket,
        store_path=args.state_db,
        devices=None if isinstance(answer, str) else answer[0],
        agent_attachments=None if isinstance(answer, str) else answer[1],
        claims=None if isinstance(contents, str) else contents[0],
        store_attachments=None if isinstance(contents, str) else contents[1],
        agent_error=answer if isinstance(answer, str) else None,
        store_error=contents if isinstance(contents, str) else None,
    )
    if args.json:
        print(json.dumps(status.report_json(report), indent=2, sort_keys=True))
    else:
        print(status.render_tables(report), end="")
    for problem in report.problems:
        print(f"{PROG} status: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


def register_status(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="show this node's devices, prepared claims and attachments",
        description="Show, from the netlink agent and the claim-state store, this node's "
        "devices (published / allocated / attached, with the pod), prepared claims and "
        "attachments. Exit 1 when either source cannot be read.",
    )
    parser.add_argument(
        "--agent-socket",
        default=os.environ.get("DRANET_AGENT_SOCKET") or DEFAULT_AGENT_SOCKET,
        metavar="PATH",
        help="the netlink agent's socket (env DRANET_AGENT_SOCKET, "
        f"default {DEFAULT_AGENT_SOCKET})",
    )
    parser.add_argument(
        "--state-db",
        default=os.environ.get("DRANET_STATE_DB") or DEFAULT_STATE_DB,
        metavar="PATH",
        help=f"the claim-state store (env DRANET_STATE_DB, default {DEFAULT_STATE_DB})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds per agent call (5)"
    )
    parser.set_defaults(run=_status)


def register_extensions(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands of other packages (entry-point group `dranet.cli`).

    One that cannot be loaded is skipped with a warning: `dranet health` is
    a probe and must keep working whatever else is installed.
    """
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            register = entry.load()
            register(commands)
        except Exception as exc:
            print(
                f"{PROG}: warning: subcommand {entry.name!r} ({entry.value}) is unavailable: "
                f"{exc}; reinstall the package that provides it",
                file=sys.stderr,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Operate the dranet network driver.")
    commands = parser.add_subparsers(dest="command", required=True)
    register_health(commands)
    register_status(commands)
    register_extensions(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.run
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
