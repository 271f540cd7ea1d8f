"""DRA device names, exactly as dranet forms them (its `pkg/names`).

A PCI-backed NIC is named after its PCI address, so the name survives the
netdev moving into a pod or being renamed: `0000:8a:00.0` -> `pci-0000-8a-00-0`.
Any other interface keeps its own name when that is a DNS-1123 label;
otherwise it becomes `net-` + the lowercase, unpadded base32 of the name
(IFNAMSIZ keeps that within the 63 characters of a label).
"""

from __future__ import annotations

import base64
import binascii
import re

PCI_PREFIX = "pci-"
NET_PREFIX = "net-"
DNS_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(value: str) -> bool:
    """RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, <= 63."""
    return len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def pci_device_name(pci_address: str) -> str:
    """`0000:8a:00.0` -> `pci-0000-8a-00-0`."""
    return PCI_PREFIX + pci_address.replace(":", "-").replace(".", "-")


def interface_device_name(ifname: str) -> str:
    """The interface name if it is a DNS label, else `net-<base32>`; '' for ''."""
    if not ifname:
        return ""
    if is_dns_label(ifname):
        return ifname
    encoded = base64.b32encode(ifname.encode()).decode("ascii").rstrip("=")
    return NET_PREFIX + encoded.lower()


def device_name(ifname: str, pci_address: str = "") -> str:
    """The DRA name of a device: PCI address first, then the interface name."""
    return pci_device_name(pci_address) if pci_address else interface_device_name(ifname)


def ifname_from_device_name(name: str) -> str | None:
    """Inverse of `interface_device_name`; None for PCI names or undecodable input.

    An interface really called `net-...` whose suffix happens to be valid
    base32 is ambiguous; such names are DNS labels and are kept as they are,
    so callers should prefer the inventory's own mapping and use this only
    as a fallback.
    """
    if name.startswith(PCI_PREFIX):
        return None
    if name.startswith(NET_PREFIX):
        payload = name[len(NET_PREFIX) :].upper()
        try:
            decoded = base64.b32decode(payload + "=" * (-len(payload) % 8)).decode()
        except (binascii.Error, ValueError):
            return name if is_dns_label(name) else None
        if decoded and not is_dns_label(decoded):
            return decoded
    return name if is_dns_label(name) else None
