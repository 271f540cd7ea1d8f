from __future__ import annotations

import pytest

from dranet.errors import SettingsError
from dranet_kubelet_plugin.attributes import device_attributes
from dranet_kubelet_plugin.filter import DEFAULT_FILTER, DeviceFilter

from .fakes import nic


def attrs(**fields: object) -> dict[str, dict[str, object]]:
    return device_attributes(nic("eth1", **fields), "dra.net")


def test_default_filter_hides_veths_like_dranet() -> None:
    keep = DeviceFilter(DEFAULT_FILTER)
    assert not keep(attrs(type="veth"))
    assert keep(attrs(type="device"))
    assert keep({})  # no type attribute at all


def test_empty_filter_publishes_everything() -> None:
    assert DeviceFilter("")(attrs(type="veth"))
    assert DeviceFilter("   ")({})


def test_int_and_bool_attributes() -> None:
    jumbo = DeviceFilter('attributes["dra.net/mtu"].IntValue >= 9000')
    assert jumbo(attrs(mtu=9000)) and not jumbo(attrs(mtu=1500))
    physical = DeviceFilter('!attributes["dra.net/virtual"].BoolValue')
    assert physical(attrs(virtual=False)) and not physical(attrs(virtual=True))


def test_evaluation_error_fails_open() -> None:
    missing = DeviceFilter('attributes["dra.net/pciAddress"].StringValue.startsWith("0000")')
    assert missing(attrs())  # no such key: error -> published


def test_non_boolean_result_hides() -> None:
    assert not DeviceFilter('attributes["dra.net/mtu"].IntValue')(attrs())


def test_syntax_error_is_refused_at_startup() -> None:
    with pytest.raises(SettingsError, match="--filter"):
        DeviceFilter('attributes["dra.net/type"')
