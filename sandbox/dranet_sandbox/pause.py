"""The pod sandbox ("pause") image, built locally: no registry is reachable.

A static C program that sleeps until SIGTERM/SIGINT and reaps children,
packed into an OCI image-layout tar by hand (one layer, reproducible: fixed
mtimes, gzip without timestamp) for `ctr images import`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from dranet.errors import PeerError

IMAGE_NAME = "localhost/dranet/pause:1"

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, bye);
    signal(SIGTERM, bye);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""


def build_pause_binary(workdir: Path) -> Path:
    source, binary = workdir / "pause.c", workdir / "pause"
    source.write_text(PAUSE_C)
    done = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise PeerError(
            f"cannot build the pause binary: {done.stderr.strip()}",
            hint="install gcc and libc6-dev",
        )
    return binary


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def oci_layout_tar(binary: Path, out: Path, image: str = IMAGE_NAME) -> Path:
    """Writes an OCI image-layout tar holding `binary` as /pause."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        _add(tar, "pause", binary.read_bytes(), 0o755)
    diff_id = "sha256:" + hashlib.sha256(layer_tar.getvalue()).hexdigest()
    layer_digest, layer = _blob(gzip.compress(layer_tar.getvalue(), mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": image,
                    "org.opencontainers.image.ref.name": image.rsplit(":", 1)[1],
                },
            }
        ],
    }
    with tarfile.open(out, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for digest, data in (
            (layer_digest, layer),
            (config_digest, config_bytes),
            (manifest_digest, manifest_bytes),
        ):
            _add(tar, f"blobs/sha256/{digest.split(':')[1]}", data)
    return out
