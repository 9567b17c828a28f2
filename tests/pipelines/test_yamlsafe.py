"""The safe YAML reader: values and lines, strictness, YAML 1.1 traps and hard limits."""

from __future__ import annotations

import time
import tracemalloc
from datetime import date
from pathlib import Path

import pytest

from pipelines.errors import ConfigError, Problem
from pipelines.yamlsafe import (
    MAX_BYTES,
    LineMap,
    check_size,
    format_path,
    load_yaml,
    parse_yaml,
)

# The classic "billion laughs": 9 levels of 9 aliases, 9**9 strings once expanded.
ALIAS_BOMB = (Path(__file__).parent / "configs" / "alias_bomb.yml").read_text()


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_yaml(text, source="t.yml")
    return info.value.problems


def test_values_and_lines() -> None:
    text = "pipelines:\n  news:\n    chain:\n      - class: a.B\n        kwargs: {n: 1}\n"
    data, lines = load_yaml(text, source="t.yml")
    assert data == {"pipelines": {"news": {"chain": [{"class": "a.B", "kwargs": {"n": 1}}]}}}
    assert lines[("pipelines", "news", "chain", 0, "class")] == 4
    assert lines[("pipelines", "news", "chain", 0, "kwargs", "n")] == 5
    assert lines[("pipelines", "news", "chain", 0)] == 4
    assert lines[()] == 1


def test_plain_values_that_are_fine() -> None:
    text = (
        "a: true\nb: false\nc: '12:30'\nd: \"no\"\ne: !!str off\nf: 0\ng: 1_000\n"
        "h: 2024-05-01\ni: ~\nj: 1.5\nk: 0x1F\nl: yesterday\n"
    )
    data, _ = load_yaml(text, source="t.yml")
    assert data == {
        "a": True,
        "b": False,
        "c": "12:30",
        "d": "no",
        "e": "off",
        "f": 0,
        "g": 1000,
        "h": date(2024, 5, 1),
        "i": None,
        "j": 1.5,
        "k": 31,
        "l": "yesterday",
    }


def test_merge_keys_and_aliases() -> None:
    text = "base: &base {a: 1, b: 2}\nitem:\n  <<: *base\n  b: 3\nlist: [*base]\n"
    data, lines = load_yaml(text, source="t.yml")
    assert data["item"] == {"a": 1, "b": 3}
    assert data["list"] == [{"a": 1, "b": 2}]
    assert data["list"][0] is not data["base"]  # aliases are copied, never shared
    assert lines[("item", "b")] == 4


def test_empty_document_is_none() -> None:
    assert load_yaml("# nothing\n", source="t.yml") == (None, LineMap())


@pytest.mark.parametrize(
    ("text", "path", "fragment", "line"),
    [
        pytest.param("a: [1, 2\n", "(file)", "expected ',' or ']'", 2, id="syntax"),
        pytest.param("a: b: c\n", "(file)", "line 1, column 5", 1, id="syntax-column"),
        pytest.param("a:\n\tb: 1\n", "(file)", "not allow tabs", 2, id="tab"),
        pytest.param("a: 1\n---\nb: 2\n", "(file)", "single document", 2, id="two-documents"),
        pytest.param(
            "run: !!python/object/apply:os.system ['echo hi']\n",
            "run",
            "tag !!python/object/apply:os.system is not allowed",
            1,
            id="python-tag",
        ),
        pytest.param("a: !custom 1\n", "a", "tag !custom is not allowed", 1, id="local-tag"),
        pytest.param("a: !!set {x}\n", "a", "tag !!set is not allowed", 1, id="set-tag"),
        pytest.param("a: 1\nb: 2\na: 3\n", "a", "duplicate key 'a' (first at line 1)", 3, id="dup"),
        pytest.param(
            "x:\n  y1: 1\n  y1: 2\n",
            "x.y1",
            "duplicate key 'y1' (first at line 2)",
            3,
            id="dup-nested",
        ),
        pytest.param(
            "at: 12:30\n",
            "at",
            'read by YAML 1.1 as the number 750; quote it: "12:30"',
            1,
            id="sexagesimal",
        ),
        pytest.param("at: 1:30:00\n", "at", "the number 5400", 1, id="sexagesimal-hms"),
        pytest.param("ok: no\n", "ok", "no is read by YAML 1.1 as false; write false", 1, id="no"),
        pytest.param("ok: Yes\n", "ok", "read by YAML 1.1 as true", 1, id="Yes"),
        pytest.param("ok: OFF\n", "ok", "as false", 1, id="OFF"),
        pytest.param("on: push\n", "on", "on is read by YAML 1.1 as true", 1, id="on-as-key"),
        pytest.param("mode: 0755\n", "mode", "the octal number 493", 1, id="octal"),
        pytest.param("day: 2024-13-01\n", "day", "not a valid !!timestamp", 1, id="bad-date"),
        pytest.param(
            "? !!python/name:os.system x\n: 1\n",
            "x",
            "tag !!python/name:os.system",
            1,
            id="key-tag",
        ),
        pytest.param("? [a]\n: 1\n", "(top level)", "keys must be plain values", 1, id="list-key"),
        pytest.param("a:\n  <<: 1\n", "a", "<< (merge) takes a mapping", 2, id="bad-merge"),
        pytest.param("a: &a [1, *a]\n", "(file)", "recursive alias", 1, id="recursive-alias"),
        pytest.param(
            "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n",
            "(file)",
            "more than 100 aliases",
            2,
            id="too-many-aliases",
        ),
        pytest.param("[" * 70 + "]" * 70, "(file)", "nested deeper than 64 levels", 1, id="deep"),
        pytest.param(
            "[" + "1," * 50_001 + "]", "(file)", "more than 50,000 values", 1, id="many-values"
        ),
    ],
)
def test_invalid_yaml(text: str, path: str, fragment: str, line: int) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.path, problem.line, problem.source) == (path, line, "t.yml")
    assert fragment in problem.message


def test_every_soft_problem_is_reported() -> None:
    problems = problems_of("a: 12:30\nb: no\na: 1\nc: !!python/name:os.system ''\n")
    assert [(p.path, p.line) for p in problems] == [("a", 1), ("b", 2), ("a", 3), ("c", 4)]


def test_problem_inside_an_alias_is_reported_once() -> None:
    problems = problems_of("base: &base {mode: off}\ncopy: *base\nmerged: {<<: *base}\n")
    assert [(p.path, p.line) for p in problems] == [("base.mode", 1)]


def test_y_and_n_keys_are_plain_strings() -> None:
    data, _ = load_yaml("point: {x: 1, y: 2, n: 3}\n", source="t.yml")
    assert data == {"point": {"x": 1, "y": 2, "n": 3}}


def test_parse_yaml_returns_soft_problems_with_the_text_of_traps() -> None:
    document = parse_yaml("at: 12:30\nrun: !!python/object:os.system {}\n", source="t.yml")
    assert document.data == {"at": "12:30", "run": None}
    assert [p.path for p in document.problems] == ["at", "run"]


def test_alias_bomb_fails_fast_and_small() -> None:
    assert len(ALIAS_BOMB.encode()) < 400
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_yaml(ALIAS_BOMB, source="bomb.yml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 2 * 1024 * 1024
    [problem] = info.value.problems
    assert "more than 50,000 values" in problem.message
    assert "alias bomb" in problem.message


def test_size_bound() -> None:
    text = "a: " + "x" * MAX_BYTES + "\n"
    [problem] = problems_of(text)
    assert problem.path == "(file)"
    assert "over the 1,048,576-byte limit" in problem.message


def test_size_counts_utf8_bytes() -> None:
    text = "a: " + "é" * (MAX_BYTES // 2) + "\n"  # under the limit in characters, over in bytes
    [problem] = problems_of(text)
    assert "byte limit" in problem.message


def test_check_size_accepts_the_limit_itself() -> None:
    check_size(MAX_BYTES, source="t.yml")
    with pytest.raises(ConfigError):
        check_size(MAX_BYTES + 1, source="t.yml")


def test_format_path() -> None:
    assert format_path(("pipelines", "news", "chain", 1, "kwargs", "selector")) == (
        "pipelines.news.chain[1].kwargs.selector"
    )
    assert format_path((0, "a")) == "[0].a"
    assert format_path(()) == "(top level)"


def test_line_map_nearest_falls_back_to_ancestors() -> None:
    lines = LineMap({(): 1, ("a",): 2, ("a", 0): 3})
    assert lines.nearest(("a", 0, "class")) == 3
    assert lines.nearest(("b",)) == 1
    assert LineMap().nearest(("a",)) is None


def test_y_and_n_stay_text_because_pyyaml_keeps_them() -> None:
    data, _ = load_yaml("ok: n\nlist: [a, y]\n", source="t.yml")
    assert data == {"ok": "n", "list": ["a", "y"]}
