"""Config schemas, validation, JSON Schema, run config resolution and YAML loading."""

from __future__ import annotations

import enum
import inspect
import re
import string
from types import SimpleNamespace
from typing import Any, Literal, Optional, Union

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag._errors import ConfigError, ConfigErrorItem, DefinitionError
from asyncdag.config import (
    ExecutionConfig,
    Field,
    ResolvedRunConfig,
    SolidRunConfig,
    config_json_schema,
    default_run_config,
    field_spec,
    load_run_config,
    normalize_schema,
    resolve_run_config,
    run_config_json_schema,
    validate_config,
)
from asyncdag.config._types import MISSING

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


@attrs.frozen
class HttpConfig:
    base_url: str
    timeout: float = 5.0
    retries: int = attrs.field(default=3, metadata={"description": "attempts per request"})
    headers: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Positive:
    n: int = attrs.field(validator=attrs.validators.ge(1))


def ok(schema: Any, value: Any) -> Any:
    result, errors = validate_config(schema, value)
    assert errors == []
    return result


def errs(schema: Any, value: Any, *, path: str = "") -> list[str]:
    _, errors = validate_config(schema, value, path=path)
    assert errors, "expected errors"
    return [str(e) for e in errors]


# --- scalars ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        (str, "x"),
        (int, 3),
        (bool, True),
        (bool, False),
        (type(None), None),
        (Any, [1]),
        (object, 1),
    ],
)
def test_scalar_accepts_its_type(schema: Any, value: Any) -> None:
    assert ok(schema, value) == value


def test_float_accepts_int_and_returns_float() -> None:
    result = ok(float, 5)
    assert result == 5.0
    assert type(result) is float


@pytest.mark.parametrize(
    ("schema", "value", "got"),
    [
        (str, 1, "int"),
        (int, "1", "str"),
        (int, True, "bool"),
        (int, 1.0, "float"),
        (float, True, "bool"),
        (bool, 1, "int"),
        (bool, "true", "str"),
    ],
)
def test_scalar_rejects_other_types_without_coercion(schema: Any, value: Any, got: str) -> None:
    assert errs(schema, value) == [f"expected {schema.__name__}, got {got}"]


def test_error_path_is_prefixed() -> None:
    assert errs({"greeting": str}, {"greeting": 1}, path="solids.hey.config") == [
        "solids.hey.config.greeting: expected str, got int"
    ]


# --- containers and nesting ------------------------------------------------------------------


def test_nested_dicts_and_list_items_report_paths() -> None:
    schema = {"opts": {"deep": [int]}, "names": list[str], "m": dict[str, int]}
    value = {"opts": {"deep": [1, 2, "x"]}, "names": ["a", 3], "m": {"a": 1, "b": "2"}}
    assert errs(schema, value) == [
        "opts.deep[2]: expected int, got str",
        "names[1]: expected str, got int",
        "m.b: expected int, got str",
    ]


def test_list_accepts_tuple_and_returns_list() -> None:
    assert ok([int], (1, 2)) == [1, 2]


def test_bare_list_and_dict_hold_anything() -> None:
    assert ok({"l": list, "d": dict}, {"l": [1, "a"], "d": {"k": None}}) == {
        "l": [1, "a"],
        "d": {"k": None},
    }


def test_map_rejects_non_string_keys() -> None:
    assert errs(dict[str, int], {1: 1}) == ["keys must be strings, got 1"]


def test_optional_is_not_required_and_defaults_to_none() -> None:
    for schema in (int | None, Optional[int]):  # noqa: UP045 - both spellings must work
        assert ok({"x": schema}, {}) == {"x": None}
        assert ok({"x": schema}, {"x": None}) == {"x": None}
        assert ok({"x": schema}, {"x": 2}) == {"x": 2}
        assert errs({"x": schema}, {"x": "2"}) == ["x: expected int, got str"]


def test_literal_matches_exact_values_only() -> None:
    schema = Literal["a", 1]
    assert ok(schema, "a") == "a"
    assert ok(schema, 1) == 1
    assert errs(schema, True) == ["expected one of 'a', 1, got True"]


def test_enum_by_member_value_or_name() -> None:
    assert ok(Color, "red") is Color.RED
    assert ok(Color, "BLUE") is Color.BLUE
    assert ok(Color, Color.RED) is Color.RED
    assert ok(Level, 2) is Level.HIGH
    assert errs(Level, True) == ["expected Level (one of 1, 2), got True"]
    assert errs(Color, "green") == ["expected Color (one of 'red', 'blue'), got 'green'"]


# --- fields, defaults, required --------------------------------------------------------------


def test_defaults_fill_in_and_nested_all_default_mappings_appear() -> None:
    schema = {
        "greeting": str,
        "times": Field(int, default=1, description="how often"),
        "opts": {"deep": Field([int], default=[1]), "flag": Field(bool, default=False)},
    }
    assert ok(schema, {"greeting": "hi"}) == {
        "greeting": "hi",
        "times": 1,
        "opts": {"deep": [1], "flag": False},
    }


def test_mutable_defaults_are_fresh_copies() -> None:
    spec = field_spec({"deep": Field([int], default=[1])})
    first, _ = validate_config(spec, {})
    first["deep"].append(2)
    second, _ = validate_config(spec, {})
    assert second == {"deep": [1]}


def test_missing_required_fields_are_named() -> None:
    schema = {"greeting": str, "opts": {"deep": [int]}}
    assert errs(schema, {}) == [
        "greeting: required field 'greeting' is missing (expected str)",
        "opts: required field 'opts' is missing (expected a mapping)",
    ]


def test_not_required_without_default_is_left_out() -> None:
    assert ok({"x": Field(int, is_required=False)}, {}) == {}


def test_explicitly_required_optional_must_be_given() -> None:
    schema = {"x": Field(int | None, is_required=True)}
    assert errs(schema, {}) == ["x: required field 'x' is missing (expected int | None)"]
    assert ok(schema, {"x": None}) == {"x": None}


def test_unknown_key_suggests_nearest() -> None:
    assert errs({"greeting": Field(str, default="")}, {"gretting": "x"}) == [
        "gretting: unknown key 'gretting'; did you mean 'greeting'?"
    ]


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    assert errs({"a": Field(int, default=1), "b": Field(int, default=1)}, {"zzz": 1}) == [
        "zzz: unknown key 'zzz'; expected one of: a, b"
    ]


def test_every_problem_is_reported_at_once() -> None:
    schema = {"greeting": str, "times": int, "opts": {"deep": [int], "name": str}}
    value = {"greting": "x", "times": "3", "opts": {"deep": ["a", 2, "b"]}, "extra": 1}
    _, errors = validate_config(schema, value, path="solids.hey.config")
    assert sorted(e.path for e in errors) == sorted(
        [
            "solids.hey.config.greting",
            "solids.hey.config.extra",
            "solids.hey.config.greeting",
            "solids.hey.config.times",
            "solids.hey.config.opts.deep[0]",
            "solids.hey.config.opts.deep[2]",
            "solids.hey.config.opts.name",
        ]
    )


def test_top_level_field_default_applies_to_none() -> None:
    assert ok(Field(int, default=4), None) == 4
    assert ok({"a": Field(int, default=1)}, None) == {"a": 1}
    assert errs({"a": int}, None) == ["the schema requires config; required fields: a (int)"]


# --- attrs classes ---------------------------------------------------------------------------


def test_attrs_class_validates_to_an_instance_with_defaults() -> None:
    assert ok(HttpConfig, {"base_url": "http://x", "timeout": 1}) == HttpConfig(
        base_url="http://x", timeout=1.0
    )
    assert ok({"http": HttpConfig}, {"http": {"base_url": "u"}}) == {"http": HttpConfig("u")}


def test_attrs_class_reports_field_errors_with_paths() -> None:
    assert errs(HttpConfig, {"timeout": "slow", "base_ur": "x"}) == [
        "base_ur: unknown key 'base_ur'; did you mean 'base_url'?",
        "base_url: required field 'base_url' is missing (expected str)",
        "timeout: expected float, got str",
    ]


def test_attrs_validators_errors_become_config_errors() -> None:
    [message] = errs(Positive, {"n": 0})
    assert message.startswith("Positive rejected it: ValueError:")


def test_attrs_instance_is_accepted_as_is() -> None:
    config = HttpConfig("u")
    assert ok(HttpConfig, config) is config


def test_attrs_all_default_class_is_an_implicit_default() -> None:
    @attrs.frozen
    class Opts:
        depth: int = 2

    assert ok({"opts": Opts}, {}) == {"opts": Opts()}


# --- invalid schemas -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"a": {"b": set}}, "field 'a.b'"),
        ({"a": [int, str]}, "exactly one item type"),
        ({"a": int | str}, "only T | None"),
        ({"a": dict[int, str]}, "str keys"),
        ({"a": Field(int, default="x")}, "does not fit its type"),
        ({"a": Field(int, default=1, is_required=True)}, "drop one of them"),
        ({1: int}, "field names must be non-empty str"),
    ],
)
def test_invalid_schema_raises_definition_error_naming_the_piece(
    schema: Any, fragment: str
) -> None:
    with pytest.raises(DefinitionError, match=re.escape(fragment)):
        normalize_schema(schema)


def test_normalized_tree_is_frozen() -> None:
    tree = normalize_schema({"a": [int]})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        tree.cls = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        tree.fields["b"] = tree.fields["a"]  # type: ignore[index]


# --- JSON Schema -----------------------------------------------------------------------------


def test_json_schema_of_a_dict_schema() -> None:
    schema = {
        "greeting": str,
        "times": Field(int, default=1, description="how often"),
        "opts": {"deep": [int]},
        "ratio": float | None,
        "mode": Literal["fast", "slow"],
        "flags": dict[str, bool],
    }
    assert config_json_schema(schema) == {
        "$schema": DIALECT,
        "type": "object",
        "properties": {
            "greeting": {"type": "string"},
            "times": {"type": "integer", "default": 1, "description": "how often"},
            "opts": {
                "type": "object",
                "properties": {"deep": {"type": "array", "items": {"type": "integer"}}},
                "required": ["deep"],
                "additionalProperties": False,
            },
            "ratio": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
            "mode": {"enum": ["fast", "slow"]},
            "flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        "required": ["greeting", "opts", "mode", "flags"],
        "additionalProperties": False,
    }


def test_json_schema_of_attrs_class_and_enum() -> None:
    assert config_json_schema({"http": HttpConfig, "color": Field(Color, default=Color.BLUE)}) == {
        "$schema": DIALECT,
        "type": "object",
        "properties": {
            "http": {
                "type": "object",
                "title": "HttpConfig",
                "properties": {
                    "base_url": {"type": "string"},
                    "timeout": {"type": "number", "default": 5.0},
                    "retries": {
                        "type": "integer",
                        "default": 3,
                        "description": "attempts per request",
                    },
                    "headers": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "default": {},
                    },
                },
                "required": ["base_url"],
                "additionalProperties": False,
            },
            "color": {"title": "Color", "enum": ["red", "RED", "blue", "BLUE"], "default": "blue"},
        },
        "required": ["http"],
        "additionalProperties": False,
    }


# --- run config ------------------------------------------------------------------------------

EMPTY = inspect.Parameter.empty


def input_def(name: str, annotation: Any = EMPTY, default: Any = EMPTY) -> SimpleNamespace:
    return SimpleNamespace(
        name=name, annotation=annotation, has_default=default is not EMPTY, default=default
    )


def node(
    name: str,
    schema: Any = None,
    inputs: tuple[SimpleNamespace, ...] = (),
    wired: tuple[str, ...] = (),
) -> SimpleNamespace:
    solid = SimpleNamespace(name=name, config_schema=schema, input_defs=inputs)
    return SimpleNamespace(name=name, solid=solid, inputs=dict.fromkeys(wired, object()))


def pipeline(
    *nodes: SimpleNamespace,
    resources: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> SimpleNamespace:
    return SimpleNamespace(
        name="p",
        default_config=config,
        nodes={n.name: n for n in nodes},
        resource_defs={k: SimpleNamespace(config_schema=v) for k, v in (resources or {}).items()},
    )


HEY_SCHEMA = {"greeting": str, "times": Field(int, default=1)}


def config_errors(p: SimpleNamespace, run_config: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve_run_config(p, run_config)
    return [str(e) for e in info.value.errors]


def test_resolve_validates_solids_resources_and_execution() -> None:
    p = pipeline(
        node("hey", HEY_SCHEMA, inputs=(input_def("name", str),)),
        node("plain"),
        resources={"http": {"timeout": Field(float, default=5)}, "db": None},
    )
    run_config = {
        "solids": {"hey": {"config": {"greeting": "Hello"}, "inputs": {"name": "Kan"}}},
        "resources": {"http": {"config": {"timeout": 2}}, "db": {"config": "anything"}},
        "execution": {"max_concurrency": 20, "concurrency_limits": {"http": 10}},
    }
    resolved = resolve_run_config(p, run_config)
    assert resolved == ResolvedRunConfig(
        solids={
            "hey": SolidRunConfig(config={"greeting": "Hello", "times": 1}, inputs={"name": "Kan"}),
            "plain": SolidRunConfig(config=None, inputs={}),
        },
        resources={"http": {"timeout": 2.0}, "db": "anything"},
        execution=ExecutionConfig(max_concurrency=20, concurrency_limits={"http": 10}),
        raw=run_config,
    )
    assert resolved.raw is not run_config


def test_resolve_with_no_config_fills_defaults() -> None:
    p = pipeline(
        node("a", {"n": Field(int, default=3)}), resources={"r": {"t": Field(int, default=1)}}
    )
    resolved = resolve_run_config(p, None)
    assert resolved.solids["a"].config == {"n": 3}
    assert resolved.resources == {"r": {"t": 1}}
    assert resolved.execution == ExecutionConfig(max_concurrency=None, concurrency_limits={})


def test_solid_with_required_config_and_no_run_config_is_named() -> None:
    assert config_errors(pipeline(node("hey", HEY_SCHEMA)), {}) == [
        "solids.hey.config: solid 'hey' requires config; required fields: greeting (str)"
    ]


def test_resource_with_required_config_and_no_run_config_is_named() -> None:
    assert config_errors(pipeline(resources={"http": {"url": str}}), None) == [
        "resources.http.config: resource 'http' requires config; required fields: url (str)"
    ]


def test_unknown_names_get_suggestions_everywhere() -> None:
    p = pipeline(node("hey", HEY_SCHEMA), resources={"http": None})
    bad = {
        "solid": {},
        "solids": {"hye": {}, "hey": {"confg": {}, "config": {"greeting": "x"}}},
        "resources": {"htp": {}},
        "execution": {"max_concurency": 3},
    }
    assert config_errors(p, bad) == [
        "solid: unknown key 'solid'; did you mean 'solids'?",
        "solids.hye: unknown solid 'hye'; did you mean 'hey'?",
        "solids.hey.confg: unknown key 'confg'; did you mean 'config'?",
        "resources.htp: unknown resource 'htp'; did you mean 'http'?",
        "execution.max_concurency: unknown key 'max_concurency'; did you mean 'max_concurrency'?",
    ]


def test_inputs_from_config_are_checked_against_annotations() -> None:
    p = pipeline(
        node(
            "s",
            inputs=(
                input_def("n", int),
                input_def("xs", list[int]),
                input_def("anything"),
                input_def("obj", object()),  # not a config type: passed through unchecked
            ),
        )
    )
    resolved = resolve_run_config(
        p, {"solids": {"s": {"inputs": {"n": 1, "xs": [1, 2], "anything": [{}], "obj": 5}}}}
    )
    assert resolved.solids["s"].inputs == {"n": 1, "xs": [1, 2], "anything": [{}], "obj": 5}
    assert config_errors(
        p, {"solids": {"s": {"inputs": {"n": "1", "xs": [1, "2"], "anything": 0, "obj": 0}}}}
    ) == [
        "solids.s.inputs.n: expected int, got str",
        "solids.s.inputs.xs[1]: expected int, got str",
    ]


def test_unfed_input_without_default_must_come_from_config() -> None:
    p = pipeline(node("s", inputs=(input_def("name", str), input_def("k", int, default=2))))
    assert config_errors(p, None) == [
        "solids.s.inputs.name: input 'name' of solid 's' is fed by no solid and has no default; "
        "give its value here"
    ]
    assert resolve_run_config(p, {"solids": {"s": {"inputs": {"name": "x"}}}}).solids[
        "s"
    ].inputs == {"name": "x"}


def test_wired_input_cannot_also_be_given_in_config() -> None:
    p = pipeline(node("s", inputs=(input_def("name", str), input_def("nmae2")), wired=("name",)))
    assert config_errors(p, {"solids": {"s": {"inputs": {"name": "x", "nmae2": 1}}}}) == [
        "solids.s.inputs.name: input 'name' of solid 's' is already fed inside the pipeline "
        "body; remove it from the run config"
    ]
    assert config_errors(p, {"solids": {"s": {"inputs": {"nmae2": 1, "nmae": 1}}}}) == [
        "solids.s.inputs.nmae: unknown input 'nmae'; did you mean 'nmae2'?"
    ]


def test_run_config_overrides_pipeline_default_key_by_key() -> None:
    p = pipeline(
        node("hey", HEY_SCHEMA),
        config={
            "solids": {"hey": {"config": {"greeting": "Hi", "times": 2}}},
            "execution": {"max_concurrency": 4},
        },
    )
    resolved = resolve_run_config(p, {"solids": {"hey": {"config": {"times": 5}}}})
    assert resolved.solids["hey"].config == {"greeting": "Hi", "times": 5}
    assert resolved.execution.max_concurrency == 4
    assert resolved.raw == {
        "solids": {"hey": {"config": {"greeting": "Hi", "times": 5}}},
        "execution": {"max_concurrency": 4},
    }
    assert p.default_config["solids"]["hey"]["config"]["times"] == 2  # not mutated


def test_execution_limits_must_be_positive() -> None:
    assert config_errors(
        pipeline(), {"execution": {"max_concurrency": 0, "concurrency_limits": {"http": -1}}}
    ) == [
        "execution.max_concurrency: must be at least 1, got 0",
        "execution.concurrency_limits.http: must be at least 1, got -1",
    ]


def test_run_config_must_be_a_mapping() -> None:
    assert config_errors(pipeline(), ["solids"]) == ["run config must be a mapping, got list"]
    assert config_errors(pipeline(), {"solids": 3}) == ["solids: expected a mapping, got int"]


def test_config_error_message_lists_every_problem() -> None:
    p = pipeline(node("a", {"x": int}), node("b", {"y": str}))
    with pytest.raises(ConfigError) as info:
        resolve_run_config(p, {"solids": {"a": {"config": {"x": "1"}}}})
    message = str(info.value)
    assert message.startswith("run config for pipeline 'p' has 2 errors")
    assert "solids.a.config.x: expected int, got str" in message
    assert "solids.b.config: solid 'b' requires config" in message


def test_schema_is_normalized_once_per_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    from asyncdag.config import _schemas as config_module

    calls: list[Any] = []
    real = config_module.field_spec

    def counting(schema: Any, **kwargs: Any) -> Any:
        calls.append(schema)
        return real(schema, **kwargs)

    monkeypatch.setattr(config_module, "field_spec", counting)
    schema = {"n": Field(int, default=1)}
    p = pipeline(node("a", schema), node("b", schema))
    for _ in range(3):
        resolve_run_config(p, None)
    assert calls == [schema]


def test_ten_thousand_nodes_without_config_resolve_without_touching_schemas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from asyncdag.config import _resolve, _schemas

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no schema work expected")

    monkeypatch.setattr(_schemas, "_spec_for", forbidden)
    monkeypatch.setattr(_resolve, "_input_type", forbidden)
    nodes = [node(f"n{i}", inputs=(input_def("x", int),), wired=("x",)) for i in range(10_000)]
    resolved = resolve_run_config(pipeline(*nodes), None)
    assert len(resolved.solids) == 10_000
    assert resolved.solids["n9999"] == SolidRunConfig()


def test_json_schema_of_a_run_config() -> None:
    p = pipeline(
        node(
            "hey",
            {"greeting": str},
            inputs=(input_def("name", str), input_def("up", int)),
            wired=("up",),
        ),
        node("plain"),
        resources={"http": {"timeout": Field(float, default=5)}},
    )
    schema = run_config_json_schema(p)
    assert schema["$schema"] == DIALECT
    assert schema["required"] == ["solids"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"solids", "resources", "execution"}
    solids = schema["properties"]["solids"]
    assert solids["required"] == ["hey"]
    assert solids["properties"]["hey"] == {
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": {"greeting": {"type": "string"}},
                "required": ["greeting"],
                "additionalProperties": False,
            },
            "inputs": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
        "required": ["config", "inputs"],
        "additionalProperties": False,
    }
    assert solids["properties"]["plain"]["properties"] == {
        "config": {},
        "inputs": {"type": "object", "properties": {}, "additionalProperties": False},
    }
    assert schema["properties"]["resources"] == {
        "type": "object",
        "properties": {
            "http": {
                "type": "object",
                "properties": {
                    "config": {
                        "type": "object",
                        "properties": {"timeout": {"type": "number", "default": 5.0}},
                        "additionalProperties": False,
                        "default": {"timeout": 5.0},
                    }
                },
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }
    execution = schema["properties"]["execution"]["properties"]
    assert execution["max_concurrency"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert execution["concurrency_limits"]["additionalProperties"] == {"type": "integer"}


def test_scaffold_fills_defaults_and_placeholders_and_resolves() -> None:
    p = pipeline(
        node(
            "hey",
            {"greeting": str, "times": Field(int, default=1), "color": Color, "http": HttpConfig},
            inputs=(input_def("name", str), input_def("k", int, default=7)),
        ),
        node("plain"),
        resources={"db": {"path": str, "ro": Field(bool, default=True)}, "free": None},
        config={"solids": {"hey": {"config": {"greeting": "Hi"}}}},
    )
    scaffold = default_run_config(p)
    assert scaffold == {
        "solids": {
            "hey": {
                "config": {
                    "greeting": "Hi",
                    "times": 1,
                    "color": "red",
                    "http": {"base_url": "", "timeout": 5.0, "retries": 3, "headers": {}},
                },
                "inputs": {"name": "", "k": 7},
            }
        },
        "resources": {"db": {"config": {"path": "", "ro": True}}},
        "execution": {"max_concurrency": None, "concurrency_limits": {}},
    }
    resolved = resolve_run_config(p, scaffold)
    assert resolved.solids["hey"].config["http"] == HttpConfig(base_url="")


# --- YAML ------------------------------------------------------------------------------------


def test_load_run_config_merges_files_in_order(tmp_path: Any) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(
        "solids:\n  hey:\n    config: {greeting: Hi, times: 2}\nexecution: {max_concurrency: 4}\n"
    )
    prod = tmp_path / "prod.yaml"
    prod.write_text("solids:\n  hey:\n    config: {times: 5}\n")
    assert load_run_config(base, str(prod), "execution: {max_concurrency: 8}") == {
        "solids": {"hey": {"config": {"greeting": "Hi", "times": 5}}},
        "execution": {"max_concurrency": 8},
    }


def test_invalid_yaml_names_file_and_line(tmp_path: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("solids:\n  hey:\n    config: {greeting: [Hi}\n")
    with pytest.raises(ConfigError) as info:
        load_run_config(bad)
    [item] = info.value.errors
    assert item.message.startswith(f"{bad}: line 3, column")
    assert "invalid YAML" in item.message


def test_yaml_top_level_must_be_a_mapping_and_empty_is_nothing(tmp_path: Any) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_run_config(empty) == {}
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_run_config("- a\n- b\n")


def test_missing_yaml_file_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_run_config(str(tmp_path / "nope.yaml"))


def test_one_line_yaml_ending_in_yaml_is_text_not_a_path() -> None:
    assert load_run_config("resources: {db: {config: {file: x.yaml}}}") == {
        "resources": {"db": {"config": {"file": "x.yaml"}}}
    }


# --- property: validation against random schemas ----------------------------------------------

KEYS = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=4)
SCALAR_SCHEMAS = st.sampled_from([str, int, float, bool, Any, Color, Literal["a", "b", 3]])


def _leaf_value(schema: Any) -> st.SearchStrategy[Any]:
    return {
        str: st.text(max_size=3),
        int: st.integers(),
        float: st.floats(allow_nan=False) | st.integers(-(2**53), 2**53),
        bool: st.booleans(),
        Any: st.none() | st.integers(),
        Color: st.sampled_from([*Color, "red", "BLUE"]),
    }.get(schema, st.sampled_from(["a", "b", 3]))


def _shape_schema(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    field = st.one_of(
        children,
        children.map(lambda s: Field(s, is_required=False)),
        st.builds(lambda s: s | None if isinstance(s, type) else Optional[s], SCALAR_SCHEMAS),  # noqa: UP045
        SCALAR_SCHEMAS.flatmap(
            lambda s: _leaf_value(s).map(lambda d: Field(s, default=d, description="d"))
        ),
    )
    return st.dictionaries(KEYS, field, max_size=4)


SCHEMAS = st.recursive(
    SCALAR_SCHEMAS,
    lambda children: st.one_of(
        children.map(lambda s: list[s]),  # type: ignore[valid-type]
        children.map(lambda s: dict[str, s]),  # type: ignore[valid-type]
        _shape_schema(children),
    ),
    max_leaves=10,
)


def _unwrap(schema: Any) -> Any:
    """Strip Field and ``| None`` wrappers down to the container or leaf schema."""
    while True:
        if isinstance(schema, Field):
            schema = schema.type
        elif _is_optional(schema):
            schema = schema.__args__[0]
        else:
            return schema


def _is_optional(schema: Any) -> bool:
    return type(None) in getattr(schema, "__args__", ()) and getattr(schema, "__origin__", 0) in (
        0,
        Union,
    )


def _is_required(sub: Any) -> bool:
    if isinstance(sub, Field):
        return False  # every Field in these schemas has a default or is_required=False
    if isinstance(sub, dict):
        return any(_is_required(s) for s in sub.values())
    return not _is_optional(sub)


def _expected(schema: Any, value: Any) -> Any:
    """What validation should return for a value known to fit: the value with defaults filled."""
    if isinstance(schema, Field):
        return _expected(schema.type, value)
    if value is None and _is_optional(schema):
        return None
    schema = _unwrap(schema)
    if schema is float:
        return float(value)
    if schema is Color:
        return Color[value] if value in Color.__members__ else Color(value)
    if isinstance(schema, dict):
        out = {}
        for key, sub in schema.items():
            if key in value:
                out[key] = _expected(sub, value[key])
            elif isinstance(sub, Field) and sub.default is not MISSING:
                out[key] = _expected(sub.type, sub.default)
            elif _is_optional(_unwrap_field(sub)):
                out[key] = None
            elif isinstance(_unwrap_field(sub), dict) and not _is_required(_unwrap_field(sub)):
                out[key] = _expected(_unwrap_field(sub), {})
            # else: not required and no default, so left out
        return out
    origin = getattr(schema, "__origin__", None)
    if origin is list:
        return [_expected(schema.__args__[0], v) for v in value]
    if origin is dict:
        return {k: _expected(schema.__args__[1], v) for k, v in value.items()}
    return value


def _unwrap_field(schema: Any) -> Any:
    return schema.type if isinstance(schema, Field) else schema


def _fitting_value(schema: Any) -> st.SearchStrategy[Any]:
    """Values that fit ``schema``, leaving out optional fields at random."""
    if isinstance(schema, Field):
        return _fitting_value(schema.type)
    if isinstance(schema, dict):
        required = {}
        optional = {}
        for key, sub in schema.items():
            strategy = _fitting_value(sub)
            if _is_required(sub):
                required[key] = strategy
            else:
                optional[key] = strategy
        return st.fixed_dictionaries(required, optional=optional)
    origin = getattr(schema, "__origin__", None)
    if origin is list:
        return st.lists(_fitting_value(schema.__args__[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(KEYS, _fitting_value(schema.__args__[1]), max_size=3)
    if getattr(schema, "__args__", None) and type(None) in schema.__args__:
        return st.none() | _fitting_value(schema.__args__[0])
    return _leaf_value(schema)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)


def _mutate(value: Any) -> st.SearchStrategy[Any]:
    """A value close to a fitting one: one random place replaced by random JSON."""
    if isinstance(value, dict) and value:
        return st.sampled_from(sorted(value)).flatmap(
            lambda k: _mutate(value[k]).map(lambda v: {**value, k: v})
        ) | JSONISH.map(lambda junk: {**value, "zz": junk})
    if isinstance(value, list) and value:
        return st.integers(0, len(value) - 1).flatmap(
            lambda i: _mutate(value[i]).map(lambda v: [*value[:i], v, *value[i + 1 :]])
        )
    return JSONISH


PATH_PART = re.compile(r"([a-z]+)|\[(\d+)\]")


def _walk(value: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted error path through ``value``: (found, what is there)."""
    for part in path.split(".") if path else []:
        for match in PATH_PART.finditer(part):
            key, index = match.groups()
            if key is not None:
                if not isinstance(value, dict) or key not in value:
                    return False, None
                value = value[key]
            else:
                if not isinstance(value, list | tuple) or int(index) >= len(value):
                    return False, None
                value = value[int(index)]
    return True, value


def _schema_at(schema: Any, path: str) -> Any:
    """The schema that governs ``path``, with Field and ``| None`` wrappers stripped."""
    schema = _unwrap(schema)
    for part in path.split(".") if path else []:
        for match in PATH_PART.finditer(part):
            key, _ = match.groups()
            if isinstance(schema, dict):
                schema = schema[key]
            elif getattr(schema, "__origin__", None) is dict:
                schema = schema.__args__[1]
            else:
                schema = schema.__args__[0]
            schema = _unwrap(schema)
    return schema


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fitting_values_validate_to_themselves_with_defaults(data: st.DataObject) -> None:
    schema = data.draw(SCHEMAS)
    value = data.draw(_fitting_value(schema))
    result, errors = validate_config(schema, value)
    assert errors == []
    assert result == _expected(schema, value)
    # Validating the result again changes nothing: defaults are already there.
    again, errors = validate_config(schema, result)
    assert errors == []
    assert again == result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_errors_point_at_places_that_exist(data: st.DataObject) -> None:
    schema = data.draw(SCHEMAS)
    value = data.draw(_fitting_value(schema).flatmap(_mutate) | JSONISH)
    result, errors = validate_config(schema, value)
    for error in errors:
        assert isinstance(error, ConfigErrorItem)
        if error.path == "" and value is None:
            continue  # None for a whole mapping means "not given": the schema requires it
        if "is missing" in error.message:
            # A missing key: its parent is in the input and the schema requires the key there.
            parent, _, key = error.path.rpartition(".")
            assert _walk(value, parent)[0], error
            assert not _walk(value, error.path)[0], error
            parent_schema = _schema_at(schema, parent)
            assert isinstance(parent_schema, dict), error
            assert _is_required(parent_schema[key]), error
        else:
            assert _walk(value, error.path)[0], error
    if not errors:
        again, more = validate_config(schema, result)
        assert more == []
        assert again == result


_ANNOTATED_MODULE = """
from typing import TYPE_CHECKING

from asyncdag import pipeline, solid

if TYPE_CHECKING:
    from decimal import Decimal


@solid
def scale(n: int, factors: list[float], exact: Decimal | None = None) -> float:
    return n * sum(factors)


@pipeline
def p():
    scale()
"""


@pytest.mark.parametrize("future", [True, False], ids=["future-annotations", "plain"])
def test_input_types_are_checked_alike_with_or_without_future_annotations(
    tmp_path: Any, future: bool
) -> None:
    import importlib.util

    path = tmp_path / f"annotated_{future}.py"
    header = "from __future__ import annotations\n" if future else ""
    # Decimal is imported only for type checkers: plain annotations must not evaluate it.
    source = _ANNOTATED_MODULE if future else _ANNOTATED_MODULE.replace("Decimal | None", "None")
    path.write_text(header + source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    inputs = {d.name: d for d in module.scale.input_defs}
    assert inputs["n"].annotation is int
    assert inputs["factors"].type_name == "list[float]"
    if future:  # a name only a type checker can see stays a string: that input is unchecked
        assert inputs["exact"].annotation == "Decimal | None"
    assert config_errors(
        module.p, {"solids": {"scale": {"inputs": {"n": "3", "factors": [1, "x"]}}}}
    ) == [
        "solids.scale.inputs.n: expected int, got str",
        "solids.scale.inputs.factors[1]: expected float, got str",
    ]
    good = {"solids": {"scale": {"inputs": {"n": 3, "factors": [0.5]}}}}
    assert resolve_run_config(module.p, good).solids["scale"].inputs == {"n": 3, "factors": [0.5]}


# --- execution.dask ---------------------------------------------------------------------


def _one_step_pipeline() -> Any:
    from asyncdag import pipeline, solid

    @solid
    def one() -> int:
        return 1

    @pipeline
    def p() -> None:
        one()

    return p


def _execution(section: Any) -> Any:
    return resolve_run_config(_one_step_pipeline(), {"execution": section}).execution


def test_execution_dask_takes_an_existing_cluster_or_a_local_one_in_dagsters_shape() -> None:
    existing = _execution({"dask": {"cluster": {"existing": {"address": "tcp://s:8786"}}}})
    assert existing.dask == {"cluster": {"existing": {"address": "tcp://s:8786"}}}
    local = _execution({"dask": {"cluster": {"local": {"n_workers": 2, "threads_per_worker": 1}}}})
    assert local.dask["cluster"]["local"]["n_workers"] == 2
    assert local.dask["cluster"]["local"]["threads_per_worker"] == 1
    # Nothing said: a local cluster sized to the machine; no dask section: in process.
    assert _execution({"dask": None}).dask["cluster"]["local"]["n_workers"] is None
    assert _execution({"max_concurrency": 3}).dask is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"cluster": {"existing": {}}},
            "execution.dask.cluster.existing.address: required field 'address' is missing",
        ),
        (
            {"cluster": {"existing": {"address": "tcp://a:1"}, "local": {}}},
            "execution.dask.cluster: give exactly one of 'existing'",
        ),
        ({"cluster": {"remote": {}}}, "execution.dask.cluster.remote: unknown cluster kind"),
        (
            {"clusters": {}},
            "execution.dask.clusters: unknown key 'clusters'; did you mean 'cluster'?",
        ),
        (3, "execution.dask: expected a mapping, got int"),
        (
            {"cluster": {"local": {"n_workers": 0}}},
            "execution.dask.cluster.local.n_workers: must be at least 1, got 0",
        ),
        (
            {"cluster": {"local": {"thread_per_worker": 1}}},
            "did you mean 'threads_per_worker'?",
        ),
    ],
)
def test_execution_dask_mistakes_name_their_key(section: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _execution({"dask": section})
    assert message in str(caught.value)


def test_the_run_config_schema_describes_execution_dask() -> None:
    dask = run_config_json_schema(_one_step_pipeline())["properties"]["execution"]["properties"][
        "dask"
    ]
    (cluster_shape, _null) = dask["anyOf"]
    kinds = cluster_shape["properties"]["cluster"]["oneOf"]
    assert [list(k["properties"]) for k in kinds] == [["existing"], ["local"]]
    assert kinds[0]["properties"]["existing"]["required"] == ["address"]
