"""Claim configuration: strict parsing and validation, class + claim merging.

The kubelet plugin runs merge -> parse -> to_json for every device of every
claim it prepares, and the agent parses each stored config again at attach
time, so parsing sits on the pod start path twice.
"""

from __future__ import annotations

import json

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from dranet.netconfig import NetworkConfig, merge_configs, parse_config, to_json

from .workloads import claim_config, class_config, full_config, large_config

pytestmark = pytest.mark.benchmark(group="netconfig")


def test_parse_full_config_json(benchmark: BenchmarkFixture) -> None:
    """Bytes as they sit in a claim's opaque parameters (duplicate-key aware JSON decode)."""
    raw = json.dumps(full_config()).encode()
    cfg = benchmark(parse_config, raw)
    assert cfg.interface.addresses == ("192.168.0.2/24", "fd00:0::2/64")
    assert [r.destination for r in cfg.routes] == ["10.0.0.0/8", "fd10::/48", "172.16.0.0/24"]
    assert cfg.neighbors[0].hardware_addr == "02:00:5e:00:53:01"
    assert to_json(cfg) == full_config()


def test_parse_full_config_mapping(benchmark: BenchmarkFixture) -> None:
    """An already-decoded mapping: what prepare passes after merging."""
    doc = full_config()
    cfg = benchmark(parse_config, doc)
    assert cfg == parse_config(json.dumps(doc))
    assert cfg.interface.mtu == 9000 and cfg.rules[0].table == 100


def test_parse_large_config(benchmark: BenchmarkFixture) -> None:
    """256 routes, 64 rules, 128 neighbors: every entry is type-checked and validated."""
    raw = json.dumps(large_config()).encode()
    cfg = benchmark(parse_config, raw)
    assert (len(cfg.routes), len(cfg.rules), len(cfg.neighbors)) == (256, 64, 128)
    assert cfg.routes[-1].destination == "10.0.255.0/24"
    assert cfg.neighbors[-1].hardware_addr == "02:00:5e:00:00:7f"


def test_merge_class_and_claim_configs(benchmark: BenchmarkFixture) -> None:
    configs = [class_config(), claim_config()]
    merged = benchmark(merge_configs, configs)
    assert merged["interface"] == {
        "mtu": 8900, "gsoMaxSize": 65536, "arpIgnore": 1,
        "name": "net1", "addresses": ["192.168.1.7/24"],
    }  # fmt: skip
    assert len(merged["routes"]) == 2  # a list is replaced whole
    assert merged["ethtool"]["features"] == {"rx-gro-hw": True, "tx-checksum-ip-generic": False}
    assert configs == [class_config(), claim_config()]  # inputs untouched


def test_prepare_pipeline_merge_parse_canonical(benchmark: BenchmarkFixture) -> None:
    """What prepare does per device: merge, strict parse, canonical JSON for the store."""
    configs = [class_config(), claim_config()]

    def resolve() -> tuple[NetworkConfig, dict[str, object]]:
        cfg = parse_config(merge_configs(configs))
        return cfg, to_json(cfg)

    cfg, canonical = benchmark(resolve)
    assert cfg.interface.mtu == 8900 and cfg.interface.arp_ignore == 1
    assert parse_config(canonical) == cfg
