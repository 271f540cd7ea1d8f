"""Pure: private flag bits <-> names (flag i of the ETH_SS_PRIV_FLAGS string set is bit i)."""

from __future__ import annotations

from dranet_netlink_agent.ethtool import bits_to_flags, flags_to_bits

NAMES = ["link-down-on-close", "legacy-rx", "disable-fw-lldp"]


def test_bits_to_flags_names_every_flag() -> None:
    assert bits_to_flags(NAMES, 0b101) == {
        "link-down-on-close": True,
        "legacy-rx": False,
        "disable-fw-lldp": True,
    }
    assert bits_to_flags([], 0b1) == {}


def test_flags_to_bits_changes_only_the_named_flags() -> None:
    assert flags_to_bits(NAMES, 0b101, {"legacy-rx": True}) == 0b111
    assert flags_to_bits(NAMES, 0b101, {"link-down-on-close": False}) == 0b100
    assert flags_to_bits(NAMES, 0b101, {}) == 0b101


def test_a_recorded_state_round_trips() -> None:
    recorded = bits_to_flags(NAMES, 0b110)
    assert flags_to_bits(NAMES, 0b001, recorded) == 0b110
