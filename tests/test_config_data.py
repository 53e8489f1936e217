"""Run config is JSON data, read from YAML at a cost bounded by its size.

The same rules hold however config arrives: a dict from Python
(``resolve_run_config``), ``-c`` files (``load_run_config``), and the web UI
(which reads YAML with the same reader; see ``test_ui_hostile_input.py``).
"""

from __future__ import annotations

import datetime
import enum
from pathlib import Path
from typing import Any

import attrs
import pytest

from asyncdag import ConfigError, pipeline, solid
from asyncdag.config import Field, load_run_config, resolve_run_config
from asyncdag.config._data import ALIAS_BUDGET, MAX_DEPTH, YamlProblem, json_data, read_yaml

ROOT = Path(__file__).resolve().parent.parent


class Mode(enum.Enum):
    FAST = "fast"


@attrs.frozen
class Window:
    days: int = 1


@solid(
    config_schema={"anything": Field(Any, is_required=False), "ratio": Field(float, default=1.0)}
)
def take(context: Any) -> Any:
    return context.solid_config


@solid(config_schema={"mode": Mode, "window": Window})
def typed(context: Any) -> Any:
    return context.solid_config


@pipeline
def taking():
    take()


@pipeline
def typed_pipeline():
    typed()


def _anything(value: Any) -> dict[str, Any]:
    return {"solids": {"take": {"config": {"anything": value}}}}


def _errors(p: Any, config: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve_run_config(p, config)
    return [str(e) for e in caught.value.errors]


# --- what run config may hold -----------------------------------------------------------------


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_errors_naming_their_path(number: float) -> None:
    [message] = _errors(taking, _anything({"deep": [1, number]}))
    assert message.startswith("solids.take.config.anything.deep[1]: ")
    assert "not a finite number" in message
    [typed_float] = _errors(taking, {"solids": {"take": {"config": {"ratio": number}}}})
    assert typed_float.startswith("solids.take.config.ratio: ")


@pytest.mark.parametrize(
    ("value", "instead"),
    [
        (b"raw", "give a string"),
        ({1, 2}, "give a list"),
        (frozenset(), "give a list"),
        (object(), "give a string, number, boolean, null, list or mapping"),
        (1 + 2j, "give a string, number"),
    ],
)
def test_values_without_a_json_form_are_errors_naming_their_path(value: Any, instead: str) -> None:
    [message] = _errors(taking, _anything([value]))
    assert message.startswith("solids.take.config.anything[0]: a ")
    assert "is not JSON data" in message and instead in message


def test_mapping_keys_must_be_strings() -> None:
    [message] = _errors(taking, _anything({80: "http"}))
    assert message.startswith("solids.take.config.anything: key 80 is a int")
    assert "quote it" in message


def test_values_with_an_obvious_json_form_are_converted_and_solids_see_what_is_stored() -> None:
    when = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)
    given = {"when": when, "day": datetime.date(2024, 5, 1), "pair": (1, 2), "mode": Mode.FAST}
    resolved = resolve_run_config(taking, _anything(given))
    expected = {
        "when": "2024-05-01T12:30:00+00:00",
        "day": "2024-05-01",
        "pair": [1, 2],
        "mode": "fast",
    }
    assert resolved.solids["take"].config["anything"] == expected
    assert resolved.raw["solids"]["take"]["config"]["anything"] == expected


def test_enum_members_and_attrs_instances_still_validate_to_themselves() -> None:
    config = {"solids": {"typed": {"config": {"mode": Mode.FAST, "window": Window(days=3)}}}}
    resolved = resolve_run_config(typed_pipeline, config)
    assert resolved.solids["typed"].config == {"mode": Mode.FAST, "window": Window(days=3)}
    assert resolved.raw["solids"]["typed"]["config"] == {"mode": "fast", "window": {"days": 3}}


def test_a_structure_that_contains_itself_is_an_error() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    [message] = _errors(taking, _anything(loop))
    assert message == (
        "solids.take.config.anything[1]: contains itself; run config must be a tree of values"
    )


def test_nesting_thousands_deep_is_an_error_not_a_recursion_error() -> None:
    deep: Any = 1
    for _ in range(50_000):
        deep = [deep]
    [message] = _errors(taking, _anything(deep))
    assert f"nests deeper than {MAX_DEPTH} levels" in message


def test_nesting_up_to_the_limit_is_fine() -> None:
    value: Any = "leaf"
    for _ in range(MAX_DEPTH - 5):  # the run config's own levels come on top
        value = {"k": value}
    assert resolve_run_config(taking, _anything(value)).solids["take"].config["anything"] == value


def test_an_integer_too_long_for_json_readers_is_an_error() -> None:
    [message] = _errors(taking, _anything(10**5000))
    assert message.startswith("solids.take.config.anything: an integer of more than 4300 digits")
    assert resolve_run_config(taking, _anything(2**200)).solids["take"].config["anything"] == 2**200


def test_the_pipelines_default_config_is_held_to_the_same_rules() -> None:
    @pipeline(config={"solids": {"take": {"config": {"anything": float("nan")}}}})
    def with_bad_default():
        take()

    [message] = _errors(with_bad_default, None)
    assert message.startswith("solids.take.config.anything: nan is not a finite number")
    assert message.endswith("(in the pipeline's default config)")


def test_json_data_copies_and_leaves_the_original_alone() -> None:
    original = {"a": [1, {"b": (2, 3)}]}
    copy, errors = json_data(original)
    assert errors == []
    assert copy == {"a": [1, {"b": [2, 3]}]}
    assert original == {"a": [1, {"b": (2, 3)}]}


# --- YAML ---------------------------------------------------------------------------------------

#: 306 bytes that expand to ~490 million values: the "billion laughs".
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_billion_laughs_is_refused_before_anything_expands() -> None:
    with pytest.raises(YamlProblem, match=r"aliases \(\*name\) would repeat [\d,]+ values"):
        read_yaml(BILLION_LAUGHS)


def test_billion_laughs_in_a_config_file_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError) as caught:
        load_run_config(path)
    [error] = caught.value.errors
    assert str(path) in error.message
    assert "'billion laughs'" in error.message


def test_the_cli_refuses_billion_laughs_with_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from asyncdag.cli import main

    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    hello = str(ROOT / "examples" / "hello_world.py")
    code = main(["pipeline", "execute", "--no-storage", "-f", hello, "-c", str(path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "would repeat" in err
    assert "Traceback" not in err


def test_aliases_within_the_budget_still_work() -> None:
    text = (
        "defaults: &defaults {retries: 3, timeout: 5}\n"
        "solids:\n"
        "  a: {config: {<<: *defaults, timeout: 9}}\n"
        "  b: {config: *defaults}\n"
        f"many: &many [{', '.join(['1'] * 100)}]\n"
        f"copies: [{', '.join(['*many'] * (ALIAS_BUDGET // 101 - 1))}]\n"
    )
    data, _ = read_yaml(text)
    assert data["solids"]["a"]["config"] == {"retries": 3, "timeout": 9}
    assert data["solids"]["b"]["config"] == {"retries": 3, "timeout": 5}


def test_an_alias_to_its_own_container_is_refused() -> None:
    with pytest.raises(YamlProblem, match="contains it") as caught:
        read_yaml("loop: &loop [1, *loop]\n")
    assert caught.value.line == 1


def test_yaml_nested_thousands_deep_is_refused_at_its_line() -> None:
    with pytest.raises(YamlProblem, match=f"nests deeper than {MAX_DEPTH} levels") as caught:
        read_yaml("x:\n  " + "[" * 5000 + "]" * 5000)
    assert caught.value.line == 2


def test_a_yaml_integer_longer_than_python_reads_is_refused_at_its_line() -> None:
    with pytest.raises(YamlProblem, match="more than 4300 digits") as caught:
        read_yaml("a: 1\nb: " + "7" * 5000 + "\n")
    assert (caught.value.line, caught.value.column) == (2, 4)
    quoted, _ = read_yaml("b: '" + "7" * 5000 + "'\n")
    assert quoted == {"b": "7" * 5000}


def test_yaml_timestamps_stay_the_text_written() -> None:
    data, _ = read_yaml("day: 2024-05-01\nwhen: 2024-05-01 12:30:00 +02:00\n")
    assert data == {"day": "2024-05-01", "when": "2024-05-01 12:30:00 +02:00"}


def test_yaml_non_finite_numbers_are_errors_at_validation() -> None:
    config = load_run_config("solids:\n  take:\n    config:\n      anything: [.nan, .inf]\n")
    messages = _errors(taking, config)
    assert [m.split(":")[0] for m in messages] == [
        "solids.take.config.anything[0]",
        "solids.take.config.anything[1]",
    ]


def test_yaml_binary_and_sets_are_errors_at_validation() -> None:
    config = load_run_config("solids: {take: {config: {anything: [!!binary aGk=, !!set {a}]}}}")
    messages = _errors(taking, config)
    assert "anything[0]: a bytes is not JSON data" in messages[0]
    assert "anything[1]: a set is not JSON data" in messages[1]


def test_a_directory_given_as_config_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot read {tmp_path}: Is a directory"):
        load_run_config(str(tmp_path))


@pytest.mark.parametrize("odd", ["\x1f", "\ud800", "\x00"])
def test_control_characters_and_lone_surrogates_in_yaml_are_refused_at_their_line(
    odd: str,
) -> None:
    with pytest.raises(YamlProblem, match="is not allowed here") as caught:
        read_yaml(f"a: 1\nb: x{odd}y\n")
    assert (caught.value.line, caught.value.column) == (2, 5)
