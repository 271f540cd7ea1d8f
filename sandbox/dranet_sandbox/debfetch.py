"""Fetch Debian packages into a private cache, without touching apt's setup.

The real-runtime tests and the demo need containerd 1.7 with NRI (Debian
trixie) plus runc and the CNI plugins (bookworm). Installing them would
change the machine: a second suite in sources.list, a pin, packages in
dpkg's database. Instead apt runs with a private sources list, lists dir
and archive dir under the cache, `apt-get download` fetches the .debs, and
`dpkg -x` unpacks them under `<cache>/root`. The mirror is the one this
machine's apt already uses, so the same code serves CI and a user's machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dranet.errors import PeerError

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_CACHE = Path(os.environ.get("DRANET_RUNTIME_CACHE", "/var/cache/dranet-runtime"))


@dataclass(frozen=True)
class Wanted:
    package: str
    suite: str


# containerd from trixie (1.7.x, NRI 0.6); runc from bookworm (trixie's needs glibc 2.38).
RUNTIME_PACKAGES = (
    Wanted("containerd", "trixie"),
    Wanted("runc", "bookworm"),
    Wanted("containernetworking-plugins", "bookworm"),
)


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI this machine's apt uses (deb822 or one-line format)."""
    override = os.environ.get("DRANET_DEBIAN_MIRROR")
    if override:
        return str(override).rstrip("/")
    texts: list[str] = []
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        if path.is_file() and path.suffix in ("", ".list", ".sources"):
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M
        ):
            if uri.rstrip("/").endswith("/debian"):
                return str(uri).rstrip("/")
    raise PeerError(
        "cannot find a Debian mirror in /etc/apt",
        hint="set DRANET_DEBIAN_MIRROR to your Debian archive URI",
    )


def _apt_options(cache: Path) -> list[str]:
    apt = cache / "apt"
    return [
        "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o", f"Dir::Etc::SourceParts={apt / 'sources.list.d'}",
        "-o", f"Dir::Etc::Preferences={apt / 'preferences'}",
        "-o", f"Dir::Etc::PreferencesParts={apt / 'preferences.d'}",
        "-o", f"Dir::State::Lists={apt / 'lists'}",
        "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "APT::Sandbox::User=root",
        "-o", "Acquire::Retries=3",
    ]  # fmt: skip


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerError(
            f"{' '.join(cmd[:2])} failed: {(done.stderr or done.stdout).strip()[-800:]}",
            hint="check that the Debian mirror is reachable",
        )
    return done.stdout


def fetch(cache: Path = DEFAULT_CACHE, wanted: tuple[Wanted, ...] = RUNTIME_PACKAGES) -> Path:
    """Downloads and unpacks `wanted` under `<cache>/root`; returns that root.

    Idempotent: a cache whose stamp lists the same packages is reused as is.
    """
    root = cache / "root"
    stamp = cache / "stamp"
    want = "\n".join(f"{w.package}/{w.suite}" for w in wanted)
    if stamp.exists() and stamp.read_text() == want and root.is_dir():
        return root
    apt = cache / "apt"
    for sub in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    suites = sorted({w.suite for w in wanted})
    (apt / "sources.list").write_text(
        "".join(f"deb [signed-by={KEYRING}] {mirror} {suite} main\n" for suite in suites)
    )
    (apt / "preferences").write_text("")
    options = _apt_options(cache)
    _run(["apt-get", *options, "-qq", "update"])
    debs = cache / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    _run(
        ["apt-get", *options, "-qq", "download", *(f"{w.package}/{w.suite}" for w in wanted)], debs
    )
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg", "-x", str(deb), str(root)])
    stamp.write_text(want)
    return root


def package_version(cache: Path, package: str) -> str:
    """The Debian version of a fetched package, from its .deb file name."""
    for deb in (cache / "debs").glob(f"{package}_*.deb"):
        return deb.name.split("_")[1].replace("%3a", ":")
    return ""
