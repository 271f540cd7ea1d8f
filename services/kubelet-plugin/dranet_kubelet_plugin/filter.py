"""The publish filter (`--filter`): a CEL expression over a device's attributes.

Same contract as kubernetes-sigs/dranet: the expression sees `attributes`, a
map from qualified attribute name to the attribute, whose fields carry Go's
names (`StringValue`, `IntValue`, `BoolValue`, `VersionValue`; unset ones are
null), e.g.

    attributes["dra.net/type"].StringValue != "veth"

True publishes the device, false or a non-boolean result hides it, and an
evaluation error publishes it (fail-open, as dranet: a typo in the filter
must not make a node's NICs vanish from the scheduler; the error is logged).
A syntax error is refused at startup instead. An empty expression publishes
everything. CEL is evaluated with cel-python (`celpy`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from dranet.errors import SettingsError

log = logging.getLogger(__name__)

# dranet's default: hide veth pairs (they are usually container plumbing).
DEFAULT_FILTER = (
    '!("dra.net/type" in attributes) || attributes["dra.net/type"].StringValue != "veth"'
)
_FIELDS = {
    "string": "StringValue",
    "int": "IntValue",
    "bool": "BoolValue",
    "version": "VersionValue",
}


def cel_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> Any:
    """Slice-JSON attributes -> the CEL value dranet's filter sees."""
    native: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        native[name] = {field: attribute.get(key) for key, field in _FIELDS.items()}
    return json_to_cel(native)


class DeviceFilter:
    """A compiled filter; call it with a device's attributes."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self._program: Any = None
        if not self.expression:
            return
        env = celpy.Environment()
        try:
            self._program = env.program(env.compile(self.expression))
        except Exception as exc:  # celpy raises its own parse/compile errors
            raise SettingsError(
                f"--filter is not a valid CEL expression: {exc}",
                hint='e.g. attributes["dra.net/type"].StringValue != "veth", or empty for all',
            ) from exc

    def __call__(self, attributes: Mapping[str, Mapping[str, Any]]) -> bool:
        if self._program is None:
            return True
        try:
            result = self._program.evaluate({"attributes": cel_attributes(attributes)})
        except Exception as exc:  # fail-open, see module docstring
            log.warning("publish filter failed, publishing the device anyway: %s", exc)
            return True
        if isinstance(result, CELEvalError):
            log.warning("publish filter failed, publishing the device anyway: %s", result)
            return True
        if isinstance(result, celtypes.BoolType | bool):
            return bool(result)
        log.warning("publish filter returned %r, not a boolean: device hidden", result)
        return False
