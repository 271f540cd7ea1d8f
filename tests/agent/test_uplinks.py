"""Uplink exclusion over plain route/link data (no kernel needed)."""

from __future__ import annotations

import socket

from dranet_netlink_agent.uplinks import (
    DEFAULT_IGNORE,
    RouteRecord,
    default_route_ifindexes,
    is_ignored,
    uplink_ifindexes,
    with_carriers,
)

V4, V6 = socket.AF_INET, socket.AF_INET6


def default(
    oifs: tuple[int, ...], metric: int = 0, family: int = V4, table: int = 254
) -> RouteRecord:
    return RouteRecord(family=family, table=table, dst_len=0, metric=metric, oifs=oifs)


def test_lowest_metric_default_route_per_family() -> None:
    routes = [default((2,), 100), default((3,), 50), default((4,), 10, V6), default((5,), 20, V6)]
    assert default_route_ifindexes(routes) == {3, 4}


def test_ecmp_ties_and_multipath_hops_are_all_kept() -> None:
    routes = [default((2,), 100), default((3,), 100), default((4, 5), 100), default((9,), 200)]
    assert default_route_ifindexes(routes) == {2, 3, 4, 5}


def test_non_default_other_tables_and_oifless_routes_do_not_count() -> None:
    routes = [
        RouteRecord(family=V4, table=254, dst_len=24, metric=0, oifs=(2,)),
        default((3,), table=100),
        default((), metric=0),  # blackhole default: no interface
        default((4,), metric=5),
    ]
    assert default_route_ifindexes(routes) == {4}
    assert default_route_ifindexes([]) == frozenset()


def test_bond_and_bridge_members_follow_their_master_transitively() -> None:
    # 10 = bridge carrying the default route; 11 = bond in the bridge; 12, 13 bond slaves;
    # 20 enslaved to an unrelated bridge 21.
    masters = {11: 10, 12: 11, 13: 11, 20: 21}
    assert uplink_ifindexes([default((10,))], masters) == {10, 11, 12, 13}
    assert with_carriers([21], masters, {}) == {20, 21}
    assert with_carriers([], masters, {}) == frozenset()


def test_ignore_list_matches_names_and_globs() -> None:
    assert is_ignored("docker0", DEFAULT_IGNORE)
    assert is_ignored("cali1234", ["cali*"])
    assert not is_ignored("eth1", ["cali*", "eth0"])
    assert not is_ignored("Docker0", DEFAULT_IGNORE)
