"""The JSON Schema of the flow language, generated from :mod:`ivr.flow.spec`.

Editors with a YAML language server (VS Code's YAML extension and others) use it for completion,
hover text and checks as a flow is typed: a flow file that starts with

    # yaml-language-server: $schema=flow.schema.json

gets them. The schema is JSON Schema draft-07, the draft those editors support best. Each node
type is a ``then`` branch chosen by an ``if`` on the node's ``type`` (rather than a ``oneOf``),
so an editor offers the keys of that type alone and reports a wrong key as "not allowed"
instead of "matches none of 15 schemas". Keys that were removed from the language are still
listed, with ``not: {}`` (any value is an error), ``deprecated`` and a ``deprecationMessage``
that says what replaced them; editors flag them and do not suggest them.

The loader remains the authority: the schema cannot see across the file (unknown target
nodes, unset variables, the graph), file system (prompt files) or ivr.yaml (queues).
``ivr schema --output flows/flow.schema.json`` refreshes the shipped copy.
"""

from __future__ import annotations

import json
from typing import Any

from ivr.flow import spec

DRAFT = "http://json-schema.org/draft-07/schema#"

Schema = dict[str, Any]

_LANGUAGE_CODE = r"^[a-z]{2,3}(-[a-z0-9]+)?$"
_NODE_NAME = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_OPTION_KEY = r"^[0-9*#]{1,16}$"
_EXTENSION_PATTERN = r"^[0-9XZN*#]{1,16}$"
_VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _anycase(word: str) -> str:
    """A regex for *word* in any letter case (the loader lower-cases day names)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


_DAY = "(" + "|".join(_anycase(d) for d in _DAYS) + ")"
_DAY_KEY = rf"^\s*({_DAY}(-{_DAY})?|{_anycase('daily')}|{_anycase('every day')})\s*$"
_RANGE = r"\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}"
_HOURS_VALUE = rf"^\s*({_anycase('closed')}|{_RANGE}(\s*,\s*{_RANGE})*)\s*$"

# Definitions shared by many keys; the keys of the spec point at them by kind.
_DEFINITIONS: dict[str, Schema] = {
    "node_name": {
        "type": "string",
        "pattern": _NODE_NAME,
        "patternErrorMessage": "a node name starts with a letter and holds only letters, "
                               "digits, '_' and '-'",
        "description": "The name of a node under 'nodes'.",
    },
    "text": {
        "type": ["string", "number"],
    },
    "language_code": {
        "type": "string",
        "pattern": _LANGUAGE_CODE,
        "patternErrorMessage": "a language code such as 'it' or 'en'",
    },
    "say": {
        "description": "Text spoken by the synthesiser: one text for every language, or one "
                       "per language of the flow ({it: ..., en: ...}). Texts may name "
                       "variables: {caller}, {position}, {account:digits}.",
        "anyOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"$ref": "#/definitions/language_code"},
                "additionalProperties": {"type": "string", "minLength": 1},
            },
        ],
    },
    "prompt_item": {
        "anyOf": [
            {"type": "string", "minLength": 1,
             "description": "Text spoken in any language (same as {say: text})."},
            {
                "type": "object",
                "description": "Exactly one of 'say' (text to speak) or 'file' (a WAV "
                               "recording).",
                "properties": {
                    "say": {"$ref": "#/definitions/say"},
                    "file": {"type": "string", "minLength": 1,
                             "description": "A WAV recording (8 or 16 kHz mono 16-bit PCM), "
                                            "relative to the flow file."},
                },
                "additionalProperties": False,
                "minProperties": 1,
                "maxProperties": 1,
            },
        ],
    },
    "prompt": {
        "description": "Prompts: 'say:' text (one text, or one per language), 'file:' a WAV "
                       "recording relative to the flow file, or a list of them played in turn.",
        "anyOf": [
            {"$ref": "#/definitions/prompt_item"},
            {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/prompt_item"}},
        ],
    },
    "options": {
        "type": "object",
        "propertyNames": {
            "pattern": _OPTION_KEY,
            "patternErrorMessage": "an option key is phone keys (0-9, * and #), e.g. \"1\"",
        },
        "additionalProperties": {
            "anyOf": [
                {"type": "string",
                 "description": "The node this key leads to, or 'repeat' to play the menu "
                                "again.",
                 "anyOf": [{"const": "repeat"}, {"$ref": "#/definitions/node_name"}]},
                {
                    "type": "object",
                    "description": "The node this key leads to (or 'repeat'), and the "
                                   "language of the call from here on.",
                    "properties": {
                        "next": {"type": "string",
                                 "description": "Node name, or 'repeat'."},
                        "language": {"$ref": "#/definitions/language_code",
                                     "description": "One of the flow's languages."},
                    },
                    "required": ["next"],
                    "additionalProperties": False,
                },
            ],
        },
    },
    "condition": {
        "type": "object",
        "description": "Tests of the call; every one given must hold.",
        "minProperties": 1,
        "properties": {},  # filled from spec.CONDITION_KEYS below
        "additionalProperties": False,
    },
    "cases": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "when": {"$ref": "#/definitions/condition"},
                "next": {"$ref": "#/definitions/node_name",
                         "description": "Node when this case holds."},
            },
            "required": ["when", "next"],
            "additionalProperties": False,
        },
    },
    "schedule": {
        "type": "object",
        "propertyNames": {
            "pattern": _DAY_KEY,
            "patternErrorMessage": "a day or range of days such as 'mon', 'mon-fri', 'daily'",
        },
        "additionalProperties": {
            "description": "Opening times such as '09:00-13:00, 14:00-18:00', or 'closed'; "
                           "or a list of them.",
            "anyOf": [
                {"type": "string", "pattern": _HOURS_VALUE},
                {"type": "array", "items": {"type": "string", "pattern": _HOURS_VALUE}},
            ],
        },
    },
}

# What each key of the 'condition' of a branch case tests (spec.CONDITION_KEYS names them).
_CONDITION_SCHEMAS: dict[str, Schema] = {
    "variable": {"type": "string", "pattern": _VARIABLE_NAME,
                 "description": "Variable to test, with exactly one of 'equals', 'matches' "
                                "or 'one_of'."},
    "equals": {"$ref": "#/definitions/text",
               "description": "The variable holds exactly this value."},
    "matches": {"type": "string", "format": "regex",
                "description": "Regular expression the whole variable must match."},
    "one_of": {"type": "array", "items": {"$ref": "#/definitions/text"},
               "description": "The variable holds one of these values."},
    "caller": {"type": "string",
               "description": "Regular expression for the caller's number, or 'withheld'."},
    "called": {"anyOf": [{"$ref": "#/definitions/text"},
                         {"type": "array", "items": {"$ref": "#/definitions/text"}}],
               "description": "Dialled number(s): which line the caller rang."},
    "language": {"$ref": "#/definitions/language_code",
                 "description": "The call's current language."},
    "ticket": {"enum": list(spec.TICKET_TESTS),
               "description": "'open': the caller has an open ticket (open or escalated); "
                              "'none': they have none."},
    "ticket_level": {"type": "integer", "minimum": 1, "maximum": 5,
                     "description": "The caller's open ticket is at this support level."},
}

# Keys of kind 'mapping' and 'list' have a shape of their own, found by name.
_SHAPED: dict[str, Schema] = {
    "extensions": {
        "type": "object",
        "properties": {
            "pattern": {
                "description": "Extension pattern: digits, X (any digit), Z (1-9), N (2-9), "
                               "e.g. '2XX'; or a list of them.",
                "anyOf": [
                    {"type": ["string", "integer"], "pattern": _EXTENSION_PATTERN},
                    {"type": "array", "minItems": 1,
                     "items": {"type": ["string", "integer"], "pattern": _EXTENSION_PATTERN}},
                ],
            },
            "next": {"$ref": "#/definitions/node_name",
                     "description": "Node reached with the digits in the variable "
                                    "'extension'."},
        },
        "required": ["pattern", "next"],
        "additionalProperties": False,
    },
    "holidays": {
        "type": "object",
        "properties": {
            "country": {"type": "string", "description": "Country code, e.g. IT."},
            "subdivision": {"$ref": "#/definitions/text",
                            "description": "Region or province code of that country."},
            "dates": {"type": "array",
                      "items": {"type": "string", "pattern": _DATE},
                      "description": "Extra closed dates, YYYY-MM-DD."},
        },
        "additionalProperties": False,
    },
    "fields": {
        "type": "object",
        "propertyNames": {"pattern": _VARIABLE_NAME},
        "additionalProperties": {"type": "string",
                                 "description": "Dotted path in the JSON answer."},
    },
    "variables": {
        "type": "object",
        "propertyNames": {"pattern": _VARIABLE_NAME},
        "additionalProperties": {"$ref": "#/definitions/text"},
    },
    "languages": {
        "type": "array",
        "minItems": 1,
        "items": {"$ref": "#/definitions/language_code"},
    },
    "nodes": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"$ref": "#/definitions/node_name"},
        "additionalProperties": {"$ref": "#/definitions/node"},
    },
}


def _kind_schema(key: spec.Key) -> Schema:
    """The schema of one key of the spec, from its kind."""
    kind = key.kind
    if key.name in _SHAPED and kind in ("mapping", "list"):
        return dict(_SHAPED[key.name])
    if kind.startswith("choice:"):
        return {"enum": kind.removeprefix("choice:").split("|")}
    simple: dict[str, Schema] = {
        "node": {"$ref": "#/definitions/node_name"},
        "prompt": {"$ref": "#/definitions/prompt"},
        "number": {"type": "number"},
        "integer": {"type": "integer"},
        "boolean": {"type": "boolean"},
        "text": {"$ref": "#/definitions/text"},
        "regex": {"type": "string", "format": "regex"},
        "language": {"$ref": "#/definitions/language_code"},
        "options": {"$ref": "#/definitions/options"},
        "cases": {"$ref": "#/definitions/cases"},
        "schedule": {"$ref": "#/definitions/schedule"},
    }
    if kind not in simple:
        raise ValueError(f"spec key '{key.name}' has kind '{kind}', which the schema does not "
                         "know: add it to ivr/flow/schema.py")
    return dict(simple[kind])


def _key_schema(key: spec.Key) -> Schema:
    # A description beside "$ref" is an annotation that draft-07 validators skip and editors
    # show; no validating keyword is ever put beside a "$ref".
    return {**_kind_schema(key), "description": key.doc}


def _removed_schema(message: str) -> Schema:
    return {
        "description": f"Removed: {message}.",
        "deprecated": True,
        "deprecationMessage": message,
        "doNotSuggest": True,
        "not": {},
    }


def _node_schema(kind: str) -> Schema:
    doc, keys = spec.NODES[kind]
    properties: dict[str, Schema] = {}
    for key in spec._COMMON + keys:
        properties[key.name] = _key_schema(key)
    properties["type"] = {"const": kind, "description": doc}
    for name, message in spec.REMOVED.get(kind, {}).items():
        properties[name] = _removed_schema(message)
    return {
        "title": f"{kind} node",
        "description": doc,
        "type": "object",
        "properties": properties,
        "required": [k.name for k in spec._COMMON if k.required] + [*spec.REQUIRED[kind]],
        "additionalProperties": False,
    }


def flow_schema() -> Schema:
    """The JSON Schema (draft-07) of a flow file, built from :mod:`ivr.flow.spec`."""
    definitions: dict[str, Schema] = {name: json.loads(json.dumps(s))
                                      for name, s in _DEFINITIONS.items()}
    definitions["condition"]["properties"] = {
        name: _CONDITION_SCHEMAS[name] for name in spec.CONDITION_KEYS}
    types = list(spec.NODE_TYPES)
    definitions["node"] = {
        "description": "A node: 'type' says what it does and which keys it takes.",
        "type": "object",
        "properties": {
            "type": {
                "description": "The node type.",
                "enum": types,
                "enumDescriptions": [spec.NODES[t][0] for t in types],
            },
        },
        "required": ["type"],
        "allOf": [
            {"if": {"type": "object", "properties": {"type": {"const": t}},
                    "required": ["type"]},
             "then": {"$ref": f"#/definitions/{t}_node"}}
            for t in types
        ],
    }
    for t in types:
        definitions[f"{t}_node"] = _node_schema(t)
    top = {key.name: _key_schema(key) for key in spec.TOP}
    return {
        "$schema": DRAFT,
        "$comment": "Generated from ivr/flow/spec.py by 'ivr schema'; do not edit by hand: "
                    "run 'ivr schema --output flows/flow.schema.json'.",
        "title": "Centralino flow",
        "description": "An IVR flow: a start node and named nodes, each with a type.",
        "type": "object",
        "properties": top,
        "required": [k.name for k in spec.TOP if k.required],
        "additionalProperties": False,
        "definitions": definitions,
    }


def schema_text() -> str:
    """The schema as the text of flows/flow.schema.json (stable: same spec, same bytes)."""
    return json.dumps(flow_schema(), indent=2, ensure_ascii=False) + "\n"


__all__ = ["DRAFT", "flow_schema", "schema_text"]
