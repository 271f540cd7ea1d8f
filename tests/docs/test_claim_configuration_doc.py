"""docs/claim-configuration.md stays true to the code.

- Every ```yaml block with an opaque config is a well-formed Kubernetes
  object whose `dra.net` parameters `parse_config` accepts (unless marked
  `<!-- doc-check: invalid -->`, which must fail with the documented text).
- Every row of a `| Rule | Input | Error |` table: parsing the input raises
  ConfigError, and the documented message is one of its problems, verbatim.
- Every message-looking code span in the doc is one of those checked rows.
- Every field of the schema has a row in a field table, and no other field does.
- The merge example resolves, through the kubelet plugin's own code, to the
  documented effective configuration.
- Each attach/prepare-time message fragment occurs in the module named for it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from dranet import netconfig
from dranet.errors import ConfigError
from dranet.netconfig import merge_configs, parse_config, to_json
from dranet_kubelet_plugin.prepare import ClaimError, configs_for_result, resolve_config

from .markdown_support import Block, blocks, code, code_spans, outside_blocks, tables

DRIVER = "dra.net"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "claim-configuration.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
BLOCKS = blocks(DOC)
TABLES = tables(DOC)

ERROR_HEADER = ("Rule", "Input", "Error")
FIELD_HEADER = ("Field", "Type", "Default", "In the pod")
FRAGMENT_HEADER = ("When", "Message contains", "Reported by")
# A problem as ConfigError prints it: "<path>: <message>" or a path-less top-level message.
PROBLEM_LIKE = re.compile(
    r"^(?:(?:interface|routes|rules|neighbors|ethtool|profile)\S*: \S"
    r"|not valid JSON:|the configuration must be)"
)


def _rows(header: tuple[str, ...]) -> list[tuple[int, tuple[str, ...]]]:
    return [row for table in TABLES if table.header == header for row in table.rows]


ERROR_ROWS = [
    (line, code(cells[1], f"line {line}"), code(cells[2], f"line {line}"))
    for line, cells in _rows(ERROR_HEADER)
]
DOCUMENTED_MESSAGES = {message for _, _, message in ERROR_ROWS}


# --- Kubernetes objects in yaml blocks -----------------------------------------------


def _docs(block: Block) -> list[dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all(block.text) if d is not None]
    assert all(isinstance(d, dict) for d in loaded), f"line {block.line}: not a YAML mapping"
    return loaded


def _walk_opaques(value: object) -> Iterator[Mapping[str, Any]]:
    """Every `opaque` mapping anywhere in a document, wherever it was put."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "opaque" and isinstance(item, Mapping):
                yield item
            yield from _walk_opaques(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_opaques(item)


def _devices(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    if doc["kind"] == "ResourceClaim":
        return dict(doc["spec"]["devices"])
    if doc["kind"] == "ResourceClaimTemplate":
        return dict(doc["spec"]["spec"]["devices"])
    return {}


def _config_entries(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The config entries where the API puts them for the object's kind."""
    if doc["kind"] == "DeviceClass":
        return list(doc["spec"].get("config") or [])
    return list(_devices(doc).get("config") or [])


def _request_names(doc: Mapping[str, Any]) -> set[str]:
    return {str(r["name"]) for r in _devices(doc).get("requests") or []}


def _has_opaque(block: Block) -> bool:
    return block.lang == "yaml" and any(True for d in _docs(block) for _ in _walk_opaques(d))


CONFIG_BLOCKS = [b for b in BLOCKS if _has_opaque(b) and b.marker != "invalid"]


def test_the_doc_has_its_worked_examples() -> None:
    # Static dual stack, rename/MTU/MAC, PBR, two VRF, neighbours, ethtool, class+claim, merge.
    with_ours = [
        b
        for b in CONFIG_BLOCKS
        if any(o.get("driver") == DRIVER for d in _docs(b) for o in _walk_opaques(d))
    ]
    assert len(with_ours) >= 8, [b.line for b in with_ours]


@pytest.mark.parametrize("block", CONFIG_BLOCKS, ids=lambda b: f"line{b.line}")
def test_yaml_examples_are_valid_claims_with_valid_parameters(block: Block) -> None:
    for doc in _docs(block):
        assert doc.get("apiVersion") == "resource.k8s.io/v1", f"line {block.line}"
        assert doc.get("kind") in ("DeviceClass", "ResourceClaim", "ResourceClaimTemplate")
        entries = _config_entries(doc)
        # Every opaque in the object sits where the API reads it.
        assert len(entries) == len(list(_walk_opaques(doc))), f"line {block.line}: misplaced"
        requests = _request_names(doc)
        for entry in entries:
            assert set(entry) <= {"opaque", "requests"}, f"line {block.line}: {sorted(entry)}"
            for name in entry.get("requests") or []:
                assert name.split("/", 1)[0] in requests, f"line {block.line}: request {name}"
            opaque = entry["opaque"]
            assert set(opaque) == {"driver", "parameters"}, f"line {block.line}"
            if opaque["driver"] != DRIVER:
                continue
            params = opaque["parameters"]
            parsed = parse_config(params)  # raises ConfigError with the reason
            assert parse_config(json.dumps(params)) == parsed
            assert parse_config(to_json(parsed)) == parsed


# --- documented error messages ------------------------------------------------------


def test_error_tables_cover_every_part_of_the_schema() -> None:
    assert ERROR_ROWS, "no | Rule | Input | Error | rows found"
    for top in ("interface", "interface.vrf", "routes", "rules", "neighbors", "ethtool"):
        assert any(m.startswith((f"{top}.", f"{top}[", f"{top}:")) for m in DOCUMENTED_MESSAGES)
    assert any(m.startswith("profile: ") for m in DOCUMENTED_MESSAGES)


@pytest.mark.parametrize(
    ("line", "raw", "message"), ERROR_ROWS, ids=[f"line{row[0]}" for row in ERROR_ROWS]
)
def test_documented_error_is_what_parsing_reports(line: int, raw: str, message: str) -> None:
    # The raw JSON text goes in as is, so duplicate keys and NaN reach the parser.
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    found = [str(p) for p in info.value.problems]
    assert message in found, f"line {line}: documented {message!r}, parser says {found}"
    assert message in str(info.value)


def test_every_message_quoted_in_the_doc_is_a_checked_row() -> None:
    quoted = [span for span in code_spans(DOC) if PROBLEM_LIKE.match(span)]
    assert quoted, "the doc quotes no error messages"
    unchecked = sorted(set(quoted) - DOCUMENTED_MESSAGES)
    assert not unchecked, f"messages quoted outside a | Rule | Input | Error | table: {unchecked}"


# --- field tables -------------------------------------------------------------------


def _schema_fields() -> set[str]:
    prefixes = {
        netconfig.InterfaceConfig: "interface.",
        netconfig.VRFConfig: "interface.vrf.",
        netconfig.RouteConfig: "routes[].",
        netconfig.RuleConfig: "rules[].",
        netconfig.NeighborConfig: "neighbors[].",
        netconfig.EthtoolConfig: "ethtool.",
    }
    assert set(prefixes) == set(netconfig._SPECS), "a new object in the schema: map it here"
    fields = {prefix + key for cls, prefix in prefixes.items() for key in netconfig._SPECS[cls]}
    containers = {prefix.split(".")[0].removesuffix("[]") for prefix in prefixes.values()}
    return fields | (set(netconfig._TOP) - containers)


def test_every_schema_field_has_exactly_one_reference_row() -> None:
    documented = [code(cells[0], f"line {line}") for line, cells in _rows(FIELD_HEADER)]
    assert len(documented) == len(set(documented)), "a field is documented twice"
    assert set(documented) == _schema_fields()


# --- resolution: merge example and the prepare error ---------------------------------


def _allocated(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The claim as the scheduler leaves it: class and claim configs in status.allocation."""
    claims = [d for d in docs if d["kind"] in ("ResourceClaim", "ResourceClaimTemplate")]
    assert len(claims) == 1
    devices = _devices(claims[0])
    entries: list[dict[str, Any]] = []
    for cls in (d for d in docs if d["kind"] == "DeviceClass"):
        users = [
            r["name"]
            for r in devices["requests"]
            if r["exactly"]["deviceClassName"] == cls["metadata"]["name"]
        ]
        entries += [
            {"source": "FromClass", "requests": users, "opaque": e["opaque"]}
            for e in _config_entries(cls)
        ]
    entries += [
        {"source": "FromClaim", "requests": e.get("requests") or [], "opaque": e["opaque"]}
        for e in devices.get("config") or []
    ]
    return {"status": {"allocation": {"devices": {"config": entries}}}}


def _marked(marker: str) -> list[tuple[Block, Block]]:
    """Each block with `marker`, paired with the block right after it."""
    return [(b, BLOCKS[i + 1]) for i, b in enumerate(BLOCKS[:-1]) if b.marker == marker]


def test_merge_example_resolves_to_the_documented_effective_config() -> None:
    pairs = _marked("merge-input")
    assert len(pairs) == 1
    given, effective_block = pairs[0]
    assert effective_block.marker == "merge-effective"
    effective = yaml.safe_load(effective_block.text)
    claim = _allocated(_docs(given))
    request = given.args["request"]
    assert merge_configs(configs_for_result(claim, DRIVER, request)) == effective
    result = {"request": request, "device": "eth1"}
    assert resolve_config(claim, DRIVER, result) == to_json(parse_config(effective))


def test_invalid_example_reports_the_documented_text() -> None:
    pairs = _marked("invalid")
    assert pairs, "no <!-- doc-check: invalid --> example"
    for given, shown in pairs:
        assert shown.lang == "text", f"line {shown.line}: the error text block must follow"
        claim = _allocated(_docs(given))
        result = {"request": given.args["request"], "device": given.args["device"]}
        with pytest.raises(ClaimError) as info:
            resolve_config(claim, DRIVER, result)
        assert str(info.value) == shown.text.strip()


# --- attach/prepare-time messages ---------------------------------------------------


FRAGMENTS = [
    (line, code(cells[1], f"line {line}"), code(cells[2], f"line {line}"))
    for line, cells in _rows(FRAGMENT_HEADER)
]


def test_fragment_tables_are_present() -> None:
    modules = {module for _, _, module in FRAGMENTS}
    assert {"dranet_netlink_agent.attach", "dranet_kubelet_plugin.prepare"} <= modules


@pytest.mark.parametrize(
    ("line", "fragment", "module"), FRAGMENTS, ids=[f"line{row[0]}" for row in FRAGMENTS]
)
def test_documented_fragment_is_in_its_module(line: int, fragment: str, module: str) -> None:
    source = inspect.getsource(importlib.import_module(module))
    assert fragment in source, f"line {line}: {fragment!r} not found in {module}"


# --- links ----------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_in_page_links_point_at_headings() -> None:
    text = outside_blocks(DOC)  # a "# comment" in a code block is no heading
    anchors = {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}
    links = re.findall(r"\]\(#([^)]+)\)", DOC)
    assert links, "no in-page links found"
    assert sorted(set(links) - anchors) == []


# --- step names -----------------------------------------------------------------------

STEP_CALL = re.compile(r'(?:\bstep|NetworkStepError)\(\s*"([^"]+)"')


def test_documented_step_names_are_the_agents() -> None:
    """The paragraph after `<!-- doc-check: steps -->` names every step the agent reports."""
    lines = DOC.splitlines()
    start = next(i for i, line in enumerate(lines) if "doc-check: steps" in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    documented = set(re.findall(r"`([^`]+)`", " ".join(lines[start:end])))
    names: set[str] = set()
    for module in ("attach", "configure", "detach"):
        source = inspect.getsource(importlib.import_module(f"dranet_netlink_agent.{module}"))
        names |= set(STEP_CALL.findall(source))
    assert names, "no step names found in the agent"
    assert documented == names
