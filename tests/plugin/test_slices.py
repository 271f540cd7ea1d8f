from __future__ import annotations

from typing import Any

from dranet_kubelet_plugin.slices import (
    Owner,
    decode_index,
    device_entry,
    encode_index,
    index_length,
    plan_pool,
    split_devices,
)

OWNER = Owner(name="node-a", uid="node-uid")


def devices(count: int, prefix: str = "eth") -> list[dict[str, Any]]:
    return [device_entry(f"{prefix}{i:03d}", {"dra.net/mtu": {"int": 1500}}) for i in range(count)]


def materialize(plan_create: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """What the API server would store for the creates of a plan."""
    stored = []
    for i, body in enumerate(plan_create):
        item = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
        item["metadata"] = dict(
            body["metadata"],
            name=body["metadata"]["generateName"] + f"x{i}",
            uid=f"u{start + i}",
            resourceVersion="1",
        )
        stored.append(item)
    return stored


def test_split_sorts_and_chunks_at_128() -> None:
    chunks = split_devices(reversed(devices(300)))
    assert [len(c) for c in chunks] == [128, 128, 44]
    names = [d["name"] for c in chunks for d in c]
    assert names == sorted(names)


def test_an_empty_pool_still_has_one_slice() -> None:
    assert split_devices([]) == [[]]


def test_devices_with_invalid_names_are_dropped() -> None:
    chunks = split_devices([device_entry("Eth_1", {}), device_entry("eth1", {})])
    assert [d["name"] for d in chunks[0]] == ["eth1"]


def test_index_encoding_round_trips() -> None:
    assert index_length(3) == 5 and index_length(0x100001) == 6
    assert encode_index(10, 5) == "0000a"
    assert decode_index("0000a-dra.net-node-a-xyz", 5) == 10
    assert decode_index("node-a-dra.net-xyz", 5) == -1
    assert decode_index("0000a-dra.net", 6) == -1


def test_first_publication_creates_all_slices_at_generation_one() -> None:
    plan = plan_pool(driver="dra.net", owner=OWNER, desired=split_devices(devices(300)), current=[])
    assert len(plan.create) == 3 and not plan.update and not plan.delete
    for i, body in enumerate(plan.create):
        assert body["metadata"]["generateName"] == f"{i:05x}-dra.net-node-a-"
        assert body["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": "node-a",
                "uid": "node-uid",
                "controller": True,
            }
        ]
        assert body["spec"]["pool"] == {"name": "node-a", "generation": 1, "resourceSliceCount": 3}
        assert body["spec"]["nodeName"] == "node-a" and body["spec"]["driver"] == "dra.net"


def test_unchanged_pool_plans_nothing() -> None:
    desired = split_devices(devices(300))
    first = plan_pool(driver="dra.net", owner=OWNER, desired=desired, current=[])
    again = plan_pool(
        driver="dra.net", owner=OWNER, desired=desired, current=materialize(first.create)
    )
    assert again.empty and again.generation == 1


def test_one_changed_slice_keeps_the_generation() -> None:
    desired = split_devices(devices(300))
    current = materialize(
        plan_pool(driver="dra.net", owner=OWNER, desired=desired, current=[]).create
    )
    desired[2] = desired[2][:-1]  # last device of the last slice gone: one slice changes
    plan = plan_pool(driver="dra.net", owner=OWNER, desired=desired, current=current)
    assert plan.generation == 1 and len(plan.update) == 1 and not plan.create
    assert plan.update[0]["metadata"]["name"] == current[2]["metadata"]["name"]
    assert plan.update[0]["kind"] == "ResourceSlice"


def test_changes_in_several_slices_bump_the_generation_everywhere() -> None:
    all_devices = devices(300)
    current = materialize(
        plan_pool(
            driver="dra.net", owner=OWNER, desired=split_devices(all_devices), current=[]
        ).create
    )
    plan = plan_pool(
        driver="dra.net", owner=OWNER, desired=split_devices(all_devices[1:]), current=current
    )
    assert plan.generation == 2
    assert len(plan.update) == 3  # every slice is rewritten with the new generation
    assert all(b["spec"]["pool"]["generation"] == 2 for b in plan.update)
    assert [len(b["spec"]["devices"]) for b in plan.update] == [128, 128, 43]


def test_fewer_slices_delete_the_extra_then_one_update_keeps_the_generation() -> None:
    current = materialize(
        plan_pool(
            driver="dra.net", owner=OWNER, desired=split_devices(devices(200)), current=[]
        ).create
    )
    plan = plan_pool(
        driver="dra.net", owner=OWNER, desired=split_devices(devices(100)), current=current
    )
    assert [s["metadata"]["name"] for s in plan.delete] == [current[1]["metadata"]["name"]]
    assert plan.generation == 1  # upstream: no new slice and one update -> kept
    assert len(plan.update) == 1
    assert plan.update[0]["spec"]["pool"]["resourceSliceCount"] == 1


def test_slices_of_an_older_generation_or_foreign_names_are_obsolete() -> None:
    current = materialize(
        plan_pool(
            driver="dra.net", owner=OWNER, desired=split_devices(devices(10)), current=[]
        ).create
    )
    stale = dict(current[0], metadata=dict(current[0]["metadata"], name="00000-dra.net-node-a-old"))
    stale["spec"] = dict(current[0]["spec"], pool=dict(current[0]["spec"]["pool"], generation=0))
    foreign = dict(current[0], metadata=dict(current[0]["metadata"], name="node-a-dra.net-abcde"))
    plan = plan_pool(
        driver="dra.net",
        owner=OWNER,
        desired=split_devices(devices(10)),
        current=[*current, stale, foreign],
    )
    assert {s["metadata"]["name"] for s in plan.delete} == {
        "00000-dra.net-node-a-old",
        "node-a-dra.net-abcde",
    }
    assert not plan.update and not plan.create


def test_deleted_slice_is_recreated_with_a_new_generation() -> None:
    current = materialize(
        plan_pool(
            driver="dra.net", owner=OWNER, desired=split_devices(devices(300)), current=[]
        ).create
    )
    plan = plan_pool(
        driver="dra.net", owner=OWNER, desired=split_devices(devices(300)), current=current[:2]
    )
    assert len(plan.create) == 1 and plan.create[0]["metadata"]["generateName"].startswith("00002-")
    assert plan.generation == 2 and len(plan.update) == 2
