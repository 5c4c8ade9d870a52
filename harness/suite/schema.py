"""JSON Schema of a suite file (``suites/*.yaml``), validated with :mod:`jsonschema`.

Metric names, units, kinds and comparison rules are not part of a suite file: the runner of
the suite's ``kind`` declares them (:mod:`harness.runners.spec`)."""
from __future__ import annotations

from harness.training.losses import LOSSES

from .resources import RESOURCES_SCHEMA

_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
_PARAM_VALUES = {"type": "array", "minItems": 1, "items": _SCALAR}
_MATRIX = {"type": "object", "additionalProperties": _PARAM_VALUES}
_COMBOS = {"type": "array", "items": {"type": "object", "additionalProperties": _SCALAR}}

_METHOD = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "object", "required": ["name"], "additionalProperties": False,
         "properties": {"name": {"type": "string", "minLength": 1},
                        "params": {"type": "object"},
                        "label": {"type": "string", "minLength": 1},
                        "loss": {"enum": sorted(LOSSES)}}},
    ]
}

#: Seeds are stored as int64 and seed torch, numpy and Python's random: 0 to 2^63 - 1.
_SEEDS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}}

_PRESET = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "description": {"type": "string"},
        "matrix": _MATRIX,
        "include": _COMBOS,
        "exclude": _COMBOS,
        "seeds": _SEEDS,
        "settings": {"type": "object"},
        "methods": {"type": "array", "minItems": 1, "items": _METHOD},
        "device": {"type": "string"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "resources": RESOURCES_SCHEMA,
    },
}

_CHECK = {
    "type": "object",
    "required": ["name", "metric", "assert", "cite"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
        "metric": {"type": "string"},
        "assert": {"type": "string", "minLength": 1},
        "when": {"type": "string", "minLength": 1},
        "where": {"type": "string", "minLength": 1},
        "cite": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "sanity": {"type": "boolean"},
    },
}

_PLOT = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["line", "scatter", "bars", "trace", "images"]},
        "title": {"type": "string"},
        "x": {"type": "string"},
        "y": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "group": {"type": "string"},
        "facet": {"type": "string"},
        "series": {"type": "string"},
        "logx": {"type": "boolean"},
        "logy": {"type": "boolean"},
        "where": {"type": "object"},
        "xlabel": {"type": "string"},
        "ylabel": {"type": "string"},
        "reference": {"type": "array", "items": {
            "type": "object", "required": ["label", "expr"], "additionalProperties": False,
            "properties": {"label": {"type": "string"}, "expr": {"type": "string"}}}},
    },
    "additionalProperties": False,
}

_PAPER_TABLE = {
    "type": "object",
    "required": ["anchor"],
    "additionalProperties": False,
    "properties": {
        "anchor": {"type": "string", "minLength": 1},
        "rows": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "best_over": {"type": "array", "items": {"type": "string"}},
        "rank": {"type": "array", "items": {"type": "string"}},
    },
}

SUITE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "description", "kind", "seeds", "presets"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$"},
        "description": {"type": "string", "minLength": 1},
        "kind": {"type": "string", "minLength": 1},
        "methods": {"type": "array", "items": _METHOD},
        "matrix": _MATRIX,
        "include": _COMBOS,
        "exclude": _COMBOS,
        "seeds": _SEEDS,
        "settings": {"type": "object"},
        "device": {"type": "string"},
        "timeout": {"type": "number", "exclusiveMinimum": 0},
        "resources": RESOURCES_SCHEMA,
        "presets": {"type": "object", "required": ["ci", "full"], "additionalProperties": _PRESET,
                    "propertyNames": {"pattern": "^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$"}},
        "checks": {"type": "array", "items": _CHECK},
        "plots": {"type": "array", "items": _PLOT},
        "paper_table": _PAPER_TABLE,
    },
}
