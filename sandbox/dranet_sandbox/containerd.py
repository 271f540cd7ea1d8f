"""A real containerd 1.7 with NRI, run as a plain process for tests and the demo.

Packages come from `debfetch` (a private cache; the machine's apt setup is
left alone). containerd runs inside the sandbox's *node* network namespace
(`nsenter --net`, staying in the machine's mount namespace so the netns
mounts it makes under /var/run/netns are visible to the agent), with its
own root, state, sockets, CNI config (bridge + host-local, no masquerade)
and NRI socket under a scratch directory. See
/work/shared/reference/real-runtime.md for the traps this encodes
(notably `restrict_oom_score_adj`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dranet.errors import PeerError
from dranet_sandbox import debfetch, pause

CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{base}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{base}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{base}/cni/net.d"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "{base}/nri/nri.sock"
  plugin_path = "{base}/nri/plugins"
  plugin_config_path = "{base}/nri/conf.d"
"""


@dataclass
class Containerd:
    """One containerd daemon; `start()` then `stop()` (or use as a context manager)."""

    base: Path
    netns: str  # path of the network namespace the daemon (and its CNI bridge) lives in
    cache: Path = debfetch.DEFAULT_CACHE
    subnet: str = field(default_factory=lambda: f"10.88.{secrets.randbelow(200) + 20}.0/24")
    bridge: str = field(default_factory=lambda: "dncni" + secrets.token_hex(2))
    snapshotter: str = "overlayfs"
    proc: subprocess.Popen[bytes] | None = None
    version: str = ""
    _command: list[str] = field(default_factory=list)
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def cri_socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def nri_socket(self) -> Path:
        return self.base / "nri" / "nri.sock"

    @property
    def log(self) -> Path:
        return self.base / "containerd.log"

    def _write_config(self, root: Path) -> Path:
        for sub in ("cni/net.d", "cni/ipam", "nri/plugins", "nri/conf.d", "logs", "opt"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        conflist = {
            "cniVersion": "1.0.0",
            "name": "dranet-sandbox",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet}]],
                        "dataDir": str(self.base / "cni" / "ipam"),
                    },
                }
            ],
        }
        (self.base / "cni/net.d/10-sandbox.conflist").write_text(json.dumps(conflist))
        config = self.base / "config.toml"
        config.write_text(
            CONFIG.format(
                base=self.base,
                image=pause.IMAGE_NAME,
                snapshotter=self.snapshotter,
                runc=root / "usr/sbin/runc",
                cni_bin=root / "usr/lib/cni",
            )
        )
        return config

    def _image_tar(self) -> Path:
        out = self.cache / "pause-oci.tar"
        if not out.exists():
            binary = pause.build_pause_binary(self.base)
            pause.oci_layout_tar(binary, out)
        return out

    def start(self, timeout: float = 15) -> None:
        root = debfetch.fetch(self.cache)
        self.version = debfetch.package_version(self.cache, "containerd")
        if not self.version.startswith("1.7."):
            raise PeerError(f"expected containerd 1.7.x from Debian trixie, got {self.version!r}")
        self.base.mkdir(parents=True, exist_ok=True)
        config = self._write_config(root)
        self._env = dict(
            os.environ, PATH=f"{root}/usr/bin:{root}/usr/sbin:{os.environ.get('PATH', '')}"
        )
        self._command = ["nsenter", f"--net={self.netns}", "--",
                         str(root / "usr/bin/containerd"), "-c", str(config)]  # fmt: skip
        self._launch(timeout)
        done = subprocess.run(
            [str(root / "usr/bin/ctr"), "-a", str(self.cri_socket), "-n", "k8s.io", "images",
             "import", "--snapshotter", self.snapshotter, str(self._image_tar())],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            self.stop()
            raise PeerError(f"cannot import the pause image: {done.stderr.strip()}")

    def _launch(self, timeout: float) -> None:
        # Stale sockets of a previous run would look ready: wait for fresh ones.
        for sock in (self.cri_socket, self.nri_socket):
            sock.unlink(missing_ok=True)
        with self.log.open("ab") as log:  # appended: a restart keeps the earlier lines
            self.proc = subprocess.Popen(
                self._command, stdout=log, stderr=subprocess.STDOUT, env=self._env,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (self.cri_socket.exists() and self.nri_socket.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:]
                self.stop()
                raise PeerError(f"containerd did not start: {tail}")
            time.sleep(0.05)

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, timeout: float = 15) -> None:
        """Restarts the daemon process only, as on a node: running pods stay."""
        if not self._command:
            raise PeerError("containerd was never started", hint="call start() first")
        self._terminate()
        self._launch(timeout)

    def stop(self) -> None:
        """Stops the daemon, unmounts what it left, removes its bridge and scratch dir."""
        self._terminate()
        mounts = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(self.base) + "/")
        ]
        for target in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        subprocess.run(
            ["nsenter", f"--net={self.netns}", "ip", "link", "del", self.bridge],
            check=False,
            capture_output=True,
        )
        with contextlib.suppress(OSError):
            shutil.rmtree(self.base)

    def __enter__(self) -> Containerd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
