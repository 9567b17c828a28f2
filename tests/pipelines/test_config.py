"""pipelines.yml: every invalid configuration reported precisely, valid ones built and run."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines import registry
from pipelines.config import (
    Config,
    PipelineConfig,
    StageConfig,
    load_config,
    parse_config,
)
from pipelines.errors import ConfigError, Problem
from pipelines.pipeline import Pipeline
from pipelines.yamlsafe import MAX_BYTES
from tests.pipelines import plugins

CONFIGS = Path(__file__).parent / "configs"
ALIAS_BOMB = (CONFIGS / "alias_bomb.yml").read_text()
P = "tests.pipelines.plugins"
HEADER = f"allowed_modules: [{P}]\n"
FORBIDDEN = plugins.FORBIDDEN


def cfg(body: str) -> str:
    """A configuration allowing the test plugins (line 1), then ``body`` from line 2."""
    return HEADER + textwrap.dedent(body)


def problems_of(text: str, **options: Any) -> list[Problem]:
    options.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="pipelines.yml", **options)
    return info.value.problems


def parse(text: str, **options: Any) -> Config:
    options.setdefault("environ", {})
    return parse_config(text, source="pipelines.yml", **options)


@pytest.fixture
def fresh_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from plugins.unload_forbidden(monkeypatch)


INVALID = [
    pytest.param(
        cfg("pipelines:\n  news: [\n"), "(file)", "invalid YAML: while parsing", 4, id="syntax"
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n\tchain: []\n"), "(file)", "not allow tabs", 4, id="tab-indent"
    ),
    pytest.param(
        cfg(
            """\
            pipelines:
              news:
                chain:
                  - class: !!python/object/apply:os.system ["echo pwned"]
            """
        ),
        "pipelines.news.chain[0].class",
        "tag !!python/object/apply:os.system is not allowed",
        5,
        id="python-tag",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                chain: [{{class: {P}.Numbers}}]
              news:
                chain: [{{class: {P}.Numbers}}]
            """
        ),
        "pipelines.news",
        "duplicate key 'news' (first at line 3)",
        5,
        id="duplicate-pipeline",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                chain:
                  - class: {P}.Numbers
                  - class: {P}.Label
                    kwargs: {{prefix: a}}
                    kwargs: {{prefix: b}}
            """
        ),
        "pipelines.news.chain[1].kwargs",
        "duplicate key 'kwargs' (first at line 7)",
        8,
        id="duplicate-stage-key",
    ),
    pytest.param(ALIAS_BOMB, "(file)", "alias bomb", 5, id="alias-bomb"),
    pytest.param(
        "pipelines: {}\n#" + "x" * MAX_BYTES,
        "(file)",
        "over the 1,048,576-byte limit",
        None,
        id="size",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                schedule: {{at: 12:30}}
                chain: [{{class: {P}.Numbers}}]
            """
        ),
        "pipelines.news.schedule.at",
        'read by YAML 1.1 as the number 750; quote it: "12:30"',
        4,
        id="sexagesimal",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                enabled: no
                chain: [{{class: {P}.Numbers}}]
            """
        ),
        "pipelines.news.enabled",
        'no is read by YAML 1.1 as false; write false or quote it: "no"',
        4,
        id="no-trap",
    ),
    pytest.param(
        cfg(f"color: blue\npipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n"),
        "color",
        "unknown key 'color'; allowed: pipelines, allowed_modules",
        2,
        id="unknown-top-level-key",
    ),
    pytest.param(
        f"allowed_module: [{P}]\npipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n",
        "allowed_module",
        "did you mean allowed_modules?",
        1,
        id="top-level-typo",
    ),
    pytest.param(
        cfg(f"pipelines:\n  News!:\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.News!",
        "bad pipeline name 'News!': use 1-64 lowercase letters",
        3,
        id="bad-pipeline-name",
    ),
    pytest.param(
        cfg(f"pipelines:\n  {'n' * 65}:\n    chain: [{{class: {P}.Numbers}}]\n"),
        f"pipelines.{'n' * 65}",
        "bad pipeline name",
        3,
        id="long-pipeline-name",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                schedul: {{cron: "0 * * * *"}}
                chain: [{{class: {P}.Numbers}}]
            """
        ),
        "pipelines.news.schedul",
        "unknown key 'schedul'; did you mean schedule?",
        4,
        id="unknown-pipeline-key",
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n    chain: []\n"),
        "pipelines.news.chain",
        "must be a non-empty list of stages, got an empty list",
        4,
        id="empty-chain",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      class: {P}.Numbers\n"),
        "pipelines.news.chain",
        "must be a non-empty list of stages, got a mapping",
        4,
        id="chain-not-a-list",
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n    description: no chain here\n"),
        "pipelines.news",
        "missing required key chain",
        3,
        id="chain-missing",
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n    chain:\n      - kwargs: {count: 2}\n"),
        "pipelines.news.chain[0]",
        "missing required key class",
        5,
        id="stage-without-class",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - {P}.Numbers\n"),
        "pipelines.news.chain[0]",
        "must be a mapping with a class: key, got the string",
        5,
        id="stage-not-a-mapping",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - class: {P}.Numbers\n        kwarg: {{}}\n"),
        "pipelines.news.chain[0].kwarg",
        "unknown key 'kwarg'; did you mean kwargs?",
        6,
        id="unknown-stage-key",
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n    chain:\n      - class: 42\n"),
        "pipelines.news.chain[0].class",
        "must be a dotted class path, got the number 42",
        5,
        id="class-not-a-string",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - class: {P}.Nope\n"),
        "pipelines.news.chain[0].class",
        f"module {P} has no attribute Nope",
        5,
        id="unknown-class",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - class: {FORBIDDEN}.Evil\n"),
        "pipelines.news.chain[0].class",
        f"module {FORBIDDEN} is not allowed (allowed: pipelines.transforms, pipelines.sinks, {P})",
        5,
        id="class-not-allowed",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - class: {P}.Plain\n"),
        "pipelines.news.chain[0].class",
        f"{P}.Plain is not a Transform: it must define exactly one of produce, process or stream",
        5,
        id="not-a-transform",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                chain:
                  - class: {P}.Numbers
                  - class: {P}.Label
                    kwargs:
                      prefix: p
                      colour: red
            """
        ),
        "pipelines.news.chain[1].kwargs.colour",
        f"{P}.Label takes no kwarg 'colour' (accepted: prefix, sep)",
        9,
        id="unknown-kwarg",
    ),
    pytest.param(
        cfg(
            f"pipelines:\n  news:\n    chain:\n"
            f"      - class: {P}.Numbers\n      - class: {P}.Label\n"
        ),
        "pipelines.news.chain[1]",
        f"missing required kwarg 'prefix' for {P}.Label",
        6,
        id="missing-kwarg",
    ),
    pytest.param(
        cfg(
            f"""\
            pipelines:
              news:
                chain:
                  - class: {P}.Numbers
                  - class: {P}.Label
                    kwargs: {{sep: "-"}}
            """
        ),
        "pipelines.news.chain[1].kwargs",
        "missing required kwarg 'prefix'",
        7,
        id="missing-kwarg-with-others",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    chain:\n      - class: {P}.Numbers\n        kwargs: [1]\n"),
        "pipelines.news.chain[0].kwargs",
        "must be a mapping, got a list",
        6,
        id="kwargs-not-a-mapping",
    ),
    pytest.param(
        cfg(
            f"pipelines:\n  news:\n    chain:\n"
            f"      - class: {P}.Double\n      - class: {P}.Numbers\n"
        ),
        "pipelines.news.chain[1].class",
        "Numbers is a source (it defines produce) and must be the first stage",
        6,
        id="source-not-first",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    timeout: -5\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.timeout",
        "must be a positive number of seconds, got the number -5",
        4,
        id="negative-timeout",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    timeout: 30s\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.timeout",
        "must be a positive number of seconds, got the string '30s'",
        4,
        id="timeout-with-unit",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    timeout: true\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.timeout",
        "got true",
        4,
        id="timeout-bool",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    enabled: 'yes'\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.enabled",
        "must be true or false, got the string 'yes'",
        4,
        id="enabled-not-bool",
    ),
    pytest.param(
        cfg(
            f"pipelines:\n  news:\n    schedule: '0 * * * *'\n    chain: [{{class: {P}.Numbers}}]\n"
        ),
        "pipelines.news.schedule",
        "must be a mapping (cron:, interval:, ...), got the string '0 * * * *'",
        4,
        id="schedule-not-a-mapping",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    description: [a]\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.description",
        "must be a string, got a list",
        4,
        id="description-not-a-string",
    ),
    pytest.param(
        cfg(f"pipelines:\n  news:\n    tags: [a, 1]\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.news.tags",
        "must be a list of non-empty strings",
        4,
        id="bad-tags",
    ),
    pytest.param(
        cfg("pipelines:\n  news:\n"),
        "pipelines.news",
        "must be a mapping with a chain: list, got null",
        3,
        id="pipeline-null",
    ),
    pytest.param(
        cfg(f"pipelines:\n  123:\n    chain: [{{class: {P}.Numbers}}]\n"),
        "pipelines.123",
        "bad pipeline name '123'",
        3,
        id="pipeline-name-not-a-string",
    ),
    pytest.param(
        cfg(
            f"pipelines:\n  news:\n    chain:\n"
            f"      - class: {P}.Options\n        kwargs: {{1: a}}\n"
        ),
        "pipelines.news.chain[0].kwargs.1",
        "kwarg names must be identifiers",
        6,
        id="kwarg-name-not-identifier",
    ),
    pytest.param(
        cfg(
            f"pipelines:\n  news:\n    chain:\n"
            f"      - class: {P}.Numbers\n      - class: {P}.PositionalOnly\n"
        ),
        "pipelines.news.chain[1]",
        f"kwargs do not fit {P}.PositionalOnly: missing a required argument: 'value'",
        6,
        id="positional-only-parameter",
    ),
    pytest.param(HEADER, "(top level)", "missing required key pipelines", 1, id="no-pipelines"),
    pytest.param(
        cfg("pipelines: {}\n"),
        "pipelines",
        "must be a non-empty mapping of pipelines, got an empty mapping",
        2,
        id="no-pipeline",
    ),
    pytest.param(
        "- news\n",
        "(top level)",
        "must be a mapping with a pipelines: key, got a list",
        1,
        id="top-list",
    ),
    pytest.param(
        f"allowed_modules: {P}\npipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n",
        "allowed_modules",
        "must be a list of module names, got the string",
        1,
        id="allowed-modules-not-a-list",
    ),
    pytest.param(
        f"allowed_modules: [acme/x]\npipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n",
        "allowed_modules[0]",
        "not a dotted module name: the string 'acme/x'",
        1,
        id="allowed-module-bad-name",
    ),
]


@pytest.mark.parametrize(("text", "path", "fragment", "line"), INVALID)
def test_invalid_configuration(text: str, path: str, fragment: str, line: int | None) -> None:
    """Each case has one defect: exactly one problem, at its path and line."""
    # The environment allows the plugins too, for the cases where the file cannot.
    problems = problems_of(text, environ={"PIPEBOT_ALLOWED_MODULES": P})
    assert len(problems) == 1, problems
    [problem] = problems
    assert (problem.path, problem.line, problem.source) == (path, line, "pipelines.yml")
    assert fragment in problem.message


def test_class_outside_allowed_modules_is_not_imported(fresh_forbidden: list[str]) -> None:
    text = cfg(f"pipelines:\n  news:\n    chain:\n      - class: {FORBIDDEN}.Evil\n")
    [problem] = problems_of(text)
    assert "is not allowed" in problem.message
    assert "add it to allowed_modules: in pipelines.yml or to PIPEBOT_ALLOWED_MODULES" in (
        problem.message
    )
    assert FORBIDDEN not in sys.modules
    assert fresh_forbidden == []


def test_every_problem_is_reported_at_once() -> None:
    calls: list[tuple[str, Any, str, int | None]] = []

    def validate_schedule(name: str, block: Any, path: str, line: int | None) -> list[Problem]:
        calls.append((name, block, path, line))
        return [Problem(f"{path}.cron", "cron needs 5 fields, got 2", line)]

    text = cfg(
        f"""\
        pipelines:
          news:
            enabled: maybe
            schedule:
              cron: "0 9"
            chain:
              - class: {P}.Numbers
              - class: {P}.Nope
          other:
            timeout: 0
            chain: []
        """
    )
    problems = problems_of(text, validate_schedule=validate_schedule)
    assert calls == [("news", {"cron": "0 9"}, "pipelines.news.schedule", 5)]
    assert [(p.path, p.line) for p in problems] == [
        ("pipelines.news.enabled", 4),
        ("pipelines.news.schedule.cron", 5),
        ("pipelines.news.chain[1].class", 9),
        ("pipelines.other.timeout", 11),
        ("pipelines.other.chain", 12),
    ]
    assert problems[1].message == "cron needs 5 fields, got 2"
    assert {p.source for p in problems} == {"pipelines.yml"}


def test_yaml_and_validation_problems_come_together() -> None:
    text = cfg(f"pipelines:\n  news:\n    enabled: off\n    chain: [{{class: {P}.Nope}}]\n")
    problems = problems_of(text)
    assert [p.path for p in problems] == ["pipelines.news.enabled", "pipelines.news.chain[0].class"]


def test_schedule_validator_is_not_called_without_a_schedule() -> None:
    def fail(*args: Any) -> list[Problem]:
        raise AssertionError("called")

    parse(
        cfg(f"pipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n"), validate_schedule=fail
    )


def test_bad_env_prefix_is_a_problem() -> None:
    text = cfg(f"pipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n")
    [problem] = problems_of(text, environ={"PIPEBOT_ALLOWED_MODULES": "ok.mod, not valid"})
    assert problem.path == "$PIPEBOT_ALLOWED_MODULES"
    assert "'not valid' is not a dotted module name" in problem.message


# -- files ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.yml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert [(p.path, p.message, p.source) for p in info.value.problems] == [
        ("(file)", "file not found", str(path))
    ]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})


def test_file_over_the_size_bound_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.yml"
    path.write_bytes(b"pipelines: {}\n#" + b"x" * (3 * MAX_BYTES))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    [problem] = info.value.problems
    assert "1,048,577 bytes, over the 1,048,576-byte limit" in problem.message


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.yml"
    path.write_bytes(b"pipelines:\n  caf\xe9: {}\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, environ={})


def test_problem_text_names_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.yml"
    path.write_text(
        cfg(f"pipelines:\n  news:\n    timeout: 0\n    chain: [{{class: {P}.Numbers}}]\n")
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (
        "1 problem in configuration\n"
        f"  - {path}:4: pipelines.news.timeout: "
        "must be a positive number of seconds, got the number 0"
    )


# -- valid configurations -----------------------------------------------------------------


def test_minimal() -> None:
    config = parse(cfg(f"pipelines:\n  news:\n    chain:\n      - class: {P}.Numbers\n"))
    assert config.source == "pipelines.yml"
    assert config.allowed_modules == ("pipelines.transforms", "pipelines.sinks", P)
    assert list(config.pipelines) == ["news"]
    news = config.pipelines["news"]
    assert news == PipelineConfig(
        name="news",
        description="",
        enabled=True,
        chain=(StageConfig(f"{P}.Numbers", {}, plugins.Numbers, 5),),
        timeout=None,
        schedule=None,
        tags=(),
        line=3,
    )
    assert not news.scheduled


def test_full_file_with_every_key() -> None:
    seen: list[tuple[str, Any, str, int | None]] = []

    def validate_schedule(name: str, block: Any, path: str, line: int | None) -> list[Problem]:
        seen.append((name, dict(block), path, line))
        return []

    config = load_config(CONFIGS / "full.yml", environ={}, validate_schedule=validate_schedule)
    assert config.source == str(CONFIGS / "full.yml")
    assert list(config.pipelines) == ["news", "paused-job_2"]
    news, paused = config.pipelines["news"], config.pipelines["paused-job_2"]
    assert (news.description, news.enabled, news.timeout, news.tags, news.line) == (
        "Numbers, doubled and labelled",
        True,
        30.0,
        ("demo", "numbers"),
        6,
    )
    assert news.schedule == {"cron": "0 */6 * * *", "timezone": "Europe/Paris"}
    assert [stage.cls for stage in news.chain] == [
        plugins.Numbers,
        plugins.Double,
        plugins.Label,
        plugins.Options,
    ]
    assert news.chain[2].kwargs == {"prefix": "item", "sep": "="}
    assert news.chain[3].kwargs == {"n": 5, "y": 2, "anything": [1, 2]}
    assert [stage.line for stage in news.chain] == [15, 18, 19, 21]
    assert news.scheduled
    assert (paused.enabled, paused.timeout, paused.scheduled) == (False, 2.5, False)
    assert seen == [
        (
            "news",
            {"cron": "0 */6 * * *", "timezone": "Europe/Paris"},
            "pipelines.news.schedule",
            11,
        ),
        ("paused-job_2", {"interval": {"minutes": 15}}, "pipelines.paused-job_2.schedule", 27),
    ]


def test_config_is_read_only() -> None:
    config = load_config(CONFIGS / "full.yml", environ={})
    news = config.pipelines["news"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        news.enabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        news.chain[0].kwargs["count"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        config.pipelines["x"] = news  # type: ignore[index]


def test_allowed_modules_from_env() -> None:
    text = f"pipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n"
    assert "is not allowed" in problems_of(text)[0].message
    config = parse(text, environ={"PIPEBOT_ALLOWED_MODULES": f"acme, {P}"})
    assert config.allowed_modules == ("pipelines.transforms", "pipelines.sinks", "acme", P)
    assert config.pipelines["news"].chain[0].cls is plugins.Numbers


def test_allowed_modules_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEBOT_ALLOWED_MODULES", P)
    text = f"pipelines:\n  news:\n    chain: [{{class: {P}.Numbers}}]\n"
    assert parse_config(text).pipelines["news"].chain[0].cls is plugins.Numbers


def test_legacy_discord_sink_path_goes_through_the_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    legacy = "core.infra.discord_sink.DiscordSink"
    assert registry.ALIASES[legacy] == "pipelines.sinks.discord.DiscordSink"
    monkeypatch.setitem(registry.ALIASES, legacy, f"{P}.Options")
    text = cfg(
        f"""\
        pipelines:
          news:
            chain:
              - class: {P}.Numbers
              - class: {legacy}
                kwargs: {{channel_id: 123456789012345678}}
        """
    )
    stage = parse(text).pipelines["news"].chain[1]
    assert (stage.class_path, stage.cls) == (legacy, plugins.Options)
    assert stage.kwargs == {"channel_id": 123456789012345678}


def test_open_kwargs_accept_anything() -> None:
    text = cfg(
        f"pipelines:\n  news:\n    chain:\n      - class: {P}.Numbers\n"
        f"      - class: {P}.Options\n        kwargs: {{x: 1, y: 2, on_error: skip}}\n"
    )
    assert parse(text).pipelines["news"].chain[1].kwargs == {"x": 1, "y": 2, "on_error": "skip"}


async def test_build_runs_the_pipeline() -> None:
    config = load_config(CONFIGS / "full.yml", environ={})
    pipeline = config.pipelines["news"].build(database_url="sqlite://")
    assert isinstance(pipeline, Pipeline)
    assert (pipeline.name, pipeline.timeout, pipeline.database_url) == ("news", 30.0, "sqlite://")
    assert pipeline.stages[0].class_path == f"{P}.Numbers"
    result = await pipeline.run()
    assert result.status == "success", result.summary()
    assert result.items == (4, 4, 4, 4)


def test_validation_of_a_realistic_file_is_quick() -> None:
    stage = f"      - class: {P}.Label\n        kwargs: {{prefix: p}}\n"
    body = "".join(
        f"  p{i}:\n    chain:\n      - class: {P}.Numbers\n{stage * 5}" for i in range(200)
    )
    started = time.perf_counter()
    config = parse(cfg("pipelines:\n" + body))
    assert len(config.pipelines) == 200
    assert time.perf_counter() - started < 2.0
