"""The registry: allowed prefixes checked before import, clear errors, legacy aliases."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import registry
from pipelines.errors import RegistryError
from pipelines.registry import (
    BUILTIN_PREFIXES,
    allowed_prefixes,
    canonical_path,
    is_allowed,
    resolve_class,
)
from tests.pipelines import plugins

PLUGINS = ("tests.pipelines.plugins",)
FORBIDDEN = plugins.FORBIDDEN


@pytest.fixture
def fresh_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    yield from plugins.unload_forbidden(monkeypatch)


def test_resolves_an_allowed_class() -> None:
    assert resolve_class("tests.pipelines.plugins.Double", PLUGINS) is plugins.Double


def test_refuses_before_importing(fresh_forbidden: list[str]) -> None:
    with pytest.raises(RegistryError) as info:
        resolve_class(f"{FORBIDDEN}.Evil", ("tests.pipelines.plugins", *BUILTIN_PREFIXES))
    message = str(info.value)
    assert f"module {FORBIDDEN} is not allowed" in message
    assert "tests.pipelines.plugins, pipelines.transforms, pipelines.sinks" in message
    assert "allowed_modules:" in message and "PIPEBOT_ALLOWED_MODULES" in message
    assert FORBIDDEN not in sys.modules
    assert fresh_forbidden == []


def test_side_effect_module_does_record_its_import(fresh_forbidden: list[str]) -> None:
    """The control for the test above: once allowed, importing it is visible."""
    cls = resolve_class(f"{FORBIDDEN}.Evil", (FORBIDDEN,))
    assert cls.__name__ == "Evil"
    assert fresh_forbidden == [FORBIDDEN]


@pytest.mark.parametrize(
    ("module", "allowed", "expected"),
    [
        ("acme", ("acme",), True),
        ("acme.x", ("acme",), True),
        ("acme.x.y", ("acme.x",), True),
        ("acmefoo", ("acme",), False),
        ("acme", ("acme.x",), False),
        ("tests.pipelines.plugins", ("tests.pipelines.plug",), False),
    ],
)
def test_prefixes_match_at_dot_boundaries(
    module: str, allowed: tuple[str, ...], expected: bool
) -> None:
    assert is_allowed(module, allowed) is expected


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("Double", "is not a dotted class path"),
        ("tests.pipelines..Double", "is not a dotted class path"),
        ("tests.pipelines.plugins.Doubel", "has no attribute Doubel; did you mean Double?"),
        ("tests.pipelines.plugins.nope.Thing", "module tests.pipelines.plugins.nope not found"),
        ("tests.pipelines.plugins.helper", "is not a class (it is function)"),
        ("tests.pipelines.plugins.NOT_A_CLASS", "is not a class (it is int)"),
        ("tests.pipelines.plugins.Plain", "must define exactly one of produce, process or stream"),
        ("tests.pipelines.plugins.Plain", "defines none of them"),
        ("tests.pipelines.plugins.TwoStyles", "defines produce and process"),
    ],
)
def test_resolution_errors(path: str, fragment: str) -> None:
    with pytest.raises(RegistryError) as info:
        resolve_class(path, PLUGINS)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("import pipebot_missing_dependency\n", "No module named 'pipebot_missing_dependency'"),
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
    ],
    ids=["missing-dependency", "raises"],
)
def test_failing_import_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, fragment: str
) -> None:
    (tmp_path / "pipebot_broken_plugin.py").write_text(body)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.delitem(sys.modules, "pipebot_broken_plugin", raising=False)
    with pytest.raises(RegistryError) as info:
        resolve_class("pipebot_broken_plugin.Thing", ("pipebot_broken_plugin",))
    assert "importing pipebot_broken_plugin failed" in str(info.value)
    assert fragment in str(info.value)
    sys.modules.pop("pipebot_broken_plugin", None)


def test_allowed_prefixes_combines_builtins_config_and_env() -> None:
    env = {"PIPEBOT_ALLOWED_MODULES": " acme.plugins, ,other ,acme.plugins"}
    assert allowed_prefixes(["mine", "acme.plugins"], env) == (
        "pipelines.transforms",
        "pipelines.sinks",
        "mine",
        "acme.plugins",
        "other",
    )
    assert allowed_prefixes((), {}) == BUILTIN_PREFIXES


def test_allowed_prefixes_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPEBOT_ALLOWED_MODULES", "from_env")
    assert allowed_prefixes() == (*BUILTIN_PREFIXES, "from_env")


def test_allowed_prefixes_rejects_bad_names() -> None:
    with pytest.raises(RegistryError, match="PIPEBOT_ALLOWED_MODULES: 'acme/x'"):
        allowed_prefixes((), {"PIPEBOT_ALLOWED_MODULES": "acme/x"})
    with pytest.raises(RegistryError, match="allowed_modules: 'a..b'"):
        allowed_prefixes(["a..b"], {})


def test_legacy_discord_sink_path_maps_to_the_sink_package() -> None:
    assert canonical_path("core.infra.discord_sink.DiscordSink") == (
        "pipelines.sinks.discord.DiscordSink"
    )
    assert canonical_path("acme.Other") == "acme.Other"


def test_aliases_resolve_to_their_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ALIASES, "legacy.place.Double", "tests.pipelines.plugins.Double")
    assert resolve_class("legacy.place.Double", PLUGINS) is plugins.Double


@pytest.mark.skipif(
    importlib.util.find_spec("pipelines.sinks.discord") is None,
    reason="pipelines.sinks.discord is not written yet",
)
def test_legacy_discord_sink_path_resolves() -> None:
    cls = resolve_class("core.infra.discord_sink.DiscordSink", BUILTIN_PREFIXES)
    assert (cls.__module__, cls.__name__) == ("pipelines.sinks.discord", "DiscordSink")
