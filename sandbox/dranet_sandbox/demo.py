"""`dranet demo`: dranet on a one-node sandbox, step by step (needs root).

    dranet demo [--json] [--keep] [--nics N] [--runtime auto|containerd|stand-in]
    python -m dranet_sandbox.demo ...        (the same, without the entry point)

Builds a `NodeSandbox` (see `dranet_sandbox.node`), creates a ResourceClaim
for one NIC (`net1`, an address, MTU 1400, a route), starts a pod with it,
shows `ip addr` inside the pod, pings the NIC's fabric peer from the pod,
shows the claim's `status.devices` (networkData), stops the pod and checks
that the NIC is back on the node exactly as before (`ip -j -d` link, addresses
and routes, minus the volatile fields listed in `netview.VOLATILE`).

`--json` prints one JSON object on stdout and nothing else (progress and
logs go to stderr). Its `timings_ms` are what the kubelet would wait for:
`prepare` = the NodePrepareResources call, `attach` = CRI RunPodSandbox
(CNI, then NRI -> hook -> agent moving and configuring the NIC), `detach` =
CRI StopPodSandbox (NRI -> hook -> agent giving the NIC back). When the
runtime stand-in replaced containerd, `runtime_note` says why. `--keep`
pauses with the pod running, prints how to look around, and tears
everything down on Ctrl-C or SIGTERM. Exit codes: 0 ok,
1 a check failed or the sandbox broke, 2 usage or not root.

`register` plugs the subcommand into the `dranet` CLI (entry-point group
`dranet.cli`); heavy imports happen only when the demo runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dranet_sandbox.debfetch import DEFAULT_CACHE

if TYPE_CHECKING:
    from dranet_sandbox.node import NodeNic, NodeSandbox, Pod

# SIGHUP too: a closed terminal under --keep must not leave the sandbox behind.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CLAIM = "demo-nic"
POD = "demo"
INTERFACE = "net1"
MTU = 1400
log = logging.getLogger("dranet.demo")


def claim_parameters(nic: NodeNic) -> dict[str, Any]:
    """The demo's dranet config: `net1`, .10 in the NIC's subnet, MTU 1400, one route."""
    prefix = nic.fabric_cidr.rsplit(".", 1)[0]
    return {
        "interface": {"name": INTERFACE, "addresses": [f"{prefix}.10/24"], "mtu": MTU},
        "routes": [{"destination": "10.201.0.0/16", "gateway": nic.fabric_ip}],
    }


def empty_report() -> dict[str, Any]:
    return {
        "ok": False,
        "runtime": "",
        "devices_published": 0,
        "resourceslices": [],
        "claim": {"uid": "", "prepared": False, "status_devices": []},
        "pod": {"interface": INTERFACE, "addresses": [], "mtu": 0, "ping": False},
        "restored": {"name": "", "mtu": 0, "mac": "", "same_as_before": False},
        "timings_ms": {"prepare": 0.0, "attach": 0.0, "detach": 0.0},
    }


def global_addresses(link: dict[str, Any]) -> list[str]:
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in link.get("addr_info") or []
        if a.get("scope") == "global"
    ]


@dataclass
class Narrator:
    """Human-readable progress: stdout normally, stderr under --json."""

    out: TextIO
    steps: int = 0
    lines: list[str] = field(default_factory=list)

    def step(self, title: str) -> None:
        self.steps += 1
        print(f"\n== {self.steps}. {title}", file=self.out, flush=True)

    def say(self, text: str = "", indent: int = 3) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            print(" " * indent + line, file=self.out, flush=True)


@dataclass
class Pause:
    """--keep: the demo waits on `resume` with the pod running."""

    resume: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: bool = False


async def run_demo(
    node: NodeSandbox, say: Narrator, report: dict[str, Any], keep: Pause | None
) -> None:
    """The demo's steps on a started sandbox; fills `report` as it goes."""
    from dranet_sandbox.node import in_netns  # noqa: PLC0415

    nic = node.nics[0]
    report["runtime"] = node.runtime_info
    if node.runtime_note:  # why the stand-in runs instead of containerd
        report["runtime_note"] = node.runtime_note
    say.step(f"A node with {len(node.nics)} NIC(s), runtime: {node.runtime_info}")
    if node.runtime_note:
        say.say(f"({node.runtime_note})")
    say.say(f"node netns {node.lab.node}, fabric netns {node.lab.fabric}, dir {node.paths.base}")
    for n in node.nics:
        say.say(f"{n.name}: {n.node_cidr}, route {n.routed} -> fabric peer {n.fabric_cidr}")

    say.step("Devices published (ResourceSlice)")
    slices = node.control.slices()
    report["resourceslices"] = [s["metadata"]["name"] for s in slices]
    for piece in slices:
        devices = piece["spec"].get("devices") or []
        report["devices_published"] += len(devices)
        say.say(f"{piece['metadata']['name']}  pool {piece['spec']['pool']['name']}")
        for d in devices:
            attrs = d.get("attributes") or {}
            shown = ", ".join(
                f"{k.split('/')[-1]}={next(iter(v.values()))}"
                for k, v in attrs.items()
                if k.split("/")[-1] in ("ifName", "mac", "mtu", "type", "ipv4")
            )
            say.say(f"  device {d['name']}: {shown}")

    say.step(f'ResourceClaim {CLAIM} (DeviceClass dranet: device.driver == "dra.net")')
    from dranet_sandbox.controlplane import DeviceRequest  # noqa: PLC0415

    params = claim_parameters(nic)
    selector = f'device.attributes["dra.net"].ifName == "{nic.name}"'
    claim = node.control.create_claim(
        CLAIM, requests=[DeviceRequest(selectors=(selector,))], parameters=params
    )
    report["claim"]["uid"] = claim["metadata"]["uid"]
    say.say(f"request nic: class dranet, selector {selector}")
    say.say("config (opaque, driver dra.net): " + json.dumps(params))
    before = node.nic_snapshot(nic.name)
    pod = node.new_pod(POD, [CLAIM])
    node.allocate(pod)
    result = node.control.claim(node.namespace, CLAIM)["status"]["allocation"]["devices"]
    say.say(f"allocated: {result['results'][0]['device']} (reserved for pod {pod.name})")

    say.step("Claim prepared (kubelet -> NodePrepareResources)")
    await node.prepare(pod)
    report["claim"]["prepared"] = True
    report["timings_ms"]["prepare"] = pod.timings["prepare"]
    say.say(f"prepared in {pod.timings['prepare']} ms")

    say.step(f"Pod started (RunPodSandbox -> NRI -> agent): {INTERFACE} inside")
    await node.run_sandbox(pod)
    report["timings_ms"]["attach"] = pod.timings["attach"]
    say.say(f"sandbox up in {pod.timings['attach']} ms, netns {pod.netns}")
    say.say("$ ip addr   (in the pod)")
    say.say(in_netns(pod.netns, "ip", "addr").stdout, indent=5)
    say.say("$ ip route   (in the pod)")
    say.say(in_netns(pod.netns, "ip", "route").stdout, indent=5)
    [link] = node.pod_ip_json(pod, "addr", "show", "dev", INTERFACE)
    report["pod"].update(addresses=global_addresses(link), mtu=int(link["mtu"]))

    say.step(f"Ping from the pod to the fabric peer {nic.fabric_ip}")
    done = node.pod_exec(pod, "ping", "-c", "3", "-i", "0.2", "-W", "2", nic.fabric_ip, check=False)
    report["pod"]["ping"] = done.returncode == 0
    summary = [line for line in done.stdout.splitlines() if "transmitted" in line]
    say.say(summary[0] if summary else (done.stdout + done.stderr).strip())

    say.step("Claim status (written by the kubelet plugin)")
    devices = await node.wait_claim_status(CLAIM)
    report["claim"]["status_devices"] = devices
    for entry in devices:
        say.say(f"{entry['device']}: networkData {json.dumps(entry.get('networkData'))}")
        conditions = ", ".join(f"{c['type']}={c['status']}" for c in entry.get("conditions") or [])
        say.say(f"  conditions {conditions}")

    if keep is not None:
        print_keep_help(node, pod, say)
        keep.waiting = True
        await keep.resume.wait()

    await stop_and_check(node, pod, nic, before, say=say, report=report)


async def stop_and_check(
    node: NodeSandbox,
    pod: Pod,
    nic: NodeNic,
    before: dict[str, Any] | None,
    *,
    say: Narrator,
    report: dict[str, Any],
) -> None:
    say.step("Pod stopped: the NIC goes back to the node")
    await node.stop_sandbox(pod)
    report["timings_ms"]["detach"] = pod.timings.get("detach", 0.0)
    await node.stop_pod(pod)  # remove, unprepare, deallocate
    say.say(f"StopPodSandbox took {report['timings_ms']['detach']} ms")
    say.say(f"$ ip addr show dev {nic.name}   (on the node)")
    say.say(node_addr_text(node, nic.name), indent=5)
    after = await node.settled_snapshot(nic.name, before)
    link = (after or {}).get("link") or {}
    same = after is not None and after == before
    report["restored"] = {
        "name": link.get("ifname", ""),
        "mtu": int(link.get("mtu", 0)),
        "mac": link.get("address", ""),
        "same_as_before": same,
    }
    say.say("link, addresses and routes: " + ("same as before" if same else "CHANGED"))
    if not same:
        say.say(f"before: {json.dumps(before)}\nafter:  {json.dumps(after)}")


def node_addr_text(node: NodeSandbox, ifname: str) -> str:
    from dranet_sandbox.netlab import ip  # noqa: PLC0415

    addr = ip("addr", "show", "dev", ifname, netns=node.lab.node, check=False)
    routes = ip("route", "show", "dev", ifname, netns=node.lab.node, check=False)
    return (addr.stdout or addr.stderr) + (routes.stdout or "")


def print_keep_help(node: NodeSandbox, pod: Pod, say: Narrator) -> None:
    say.step("Kept running: look around (as root, in another shell)")
    sock, db = node.paths.agent_socket, node.paths.state_db
    say.say(
        f"nsenter --net={pod.netns} ip addr          # the pod ({INTERFACE} from dranet)\n"
        f"nsenter --net={pod.netns} ping -c1 {node.nics[0].fabric_ip}\n"
        f"ip netns exec {node.lab.node} ip addr       # the node's other NICs\n"
        f"ip netns exec {node.lab.fabric} ip addr     # the fabric peers\n"
        f"dranet status --agent-socket {sock} --state-db {db}\n"
        f"curl -s {node.api.url}/apis/resource.k8s.io/v1/resourceslices\n"
        f"curl -s {node.api.url}/apis/resource.k8s.io/v1/namespaces/{node.namespace}"
        f"/resourceclaims/{CLAIM}\n"
        f"logs: {node.paths.logs}/{{agent,plugin,hook}}.log"
    )
    say.say(
        f"\nTear down: Ctrl-C here, or `kill -TERM {os.getpid()}`. The pod is stopped, "
        f"{node.nics[0].name} goes back to the node and the sandbox is removed.\n"
        f"If this process was killed: dranet demo --teardown {node.paths.base}"
    )


async def demo_main(args: argparse.Namespace) -> int:
    from dranet_sandbox.node import NodeSandbox  # noqa: PLC0415

    say = Narrator(sys.stderr if args.json else sys.stdout)
    report = empty_report()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    keep = Pause() if args.keep else None
    signals = {"count": 0}

    def on_signal() -> None:
        signals["count"] += 1
        if keep is not None and keep.waiting and not keep.resume.is_set():
            keep.resume.set()  # tear down through the normal steps
        elif signals["count"] == 1:
            print("\ninterrupted: cleaning up (the NICs go back to the node)...", file=sys.stderr)
            main_task.cancel()
        else:
            print("still cleaning up, please wait", file=sys.stderr)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        say.say(f"dranet demo: building a node sandbox with {args.nics} NIC(s)...", indent=0)
        if args.runtime != "stand-in" and not (DEFAULT_CACHE / "stamp").exists():
            say.say(f"(first run: fetching containerd, runc and CNI plugins into {DEFAULT_CACHE})")
        async with NodeSandbox(args.nics, runtime=args.runtime, log_level=args.log_level) as node:
            await run_demo(node, say, report, keep)
        report["ok"] = bool(
            report["claim"]["prepared"]
            and report["pod"]["ping"]
            and report["restored"]["same_as_before"]
            and report["claim"]["status_devices"]
        )
    except asyncio.CancelledError:
        report["error"] = "interrupted"
    except Exception as exc:
        report["error"] = str(exc)
        log.debug("demo failed", exc_info=True)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        if "error" in report:
            print(f"\ndranet demo failed: {report['error']}", file=sys.stderr)
        verdict = "OK" if report["ok"] else "FAILED"
        say.say(f"\n{verdict}: prepare {report['timings_ms']['prepare']} ms, attach "
                f"{report['timings_ms']['attach']} ms, detach {report['timings_ms']['detach']} ms",
                indent=0)  # fmt: skip
    return 0 if report["ok"] else 1


def run_command(args: argparse.Namespace) -> int:
    if args.teardown:
        return teardown_command(args.teardown)
    if not 1 <= args.nics <= 50:
        print("dranet demo: --nics must be between 1 and 50", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(
            "dranet demo: needs root: it creates network namespaces, veth NICs and runs a "
            "container runtime (all removed afterwards). Run it with sudo.",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.WARNING),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(demo_main(args))


def teardown_command(directory: str) -> int:
    from dranet.errors import DranetError  # noqa: PLC0415
    from dranet_sandbox.teardown import teardown  # noqa: PLC0415

    if os.geteuid() != 0:
        print("dranet demo --teardown: needs root", file=sys.stderr)
        return 2
    try:
        for line in teardown(Path(directory)):
            print(line)
    except DranetError as exc:
        print(f"dranet demo --teardown: {exc}", file=sys.stderr)
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--keep", action="store_true", help="pause with the pod running; Ctrl-C tears down"
    )
    parser.add_argument("--nics", type=int, default=2, metavar="N", help="NICs on the node (2)")
    parser.add_argument(
        "--runtime",
        choices=("auto", "containerd", "stand-in"),
        default="auto",
        help="auto: containerd, or the NRI stand-in when containerd cannot be set up",
    )
    parser.add_argument(
        "--log-level", default="warning", help="sandbox and services log level (warning)"
    )
    parser.add_argument(
        "--teardown",
        metavar="DIR",
        default="",
        help="tear down the sandbox in DIR left by a demo that was killed, then exit",
    )
    parser.set_defaults(run=run_command)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `dranet.cli` entry point: adds `dranet demo`."""
    parser = commands.add_parser(
        "demo",
        help="run dranet on a local node sandbox, step by step (root)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dranet demo", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
