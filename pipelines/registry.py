"""Turn the dotted class paths of ``pipelines.yml`` into Transform classes, safely.

Importing a module runs its code, so a path is checked against the allowed module
prefixes before anything is imported. Allowed are the built-in packages
(``BUILTIN_PREFIXES``), the ``allowed_modules:`` list of ``pipelines.yml`` and the
comma-separated ``PIPEBOT_ALLOWED_MODULES`` environment variable. A prefix allows
itself and its submodules: ``acme`` allows ``acme.x`` but not ``acmefoo``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from .core import STYLES, transform_style
from .errors import RegistryError

logger = logging.getLogger(__name__)

BUILTIN_PREFIXES: tuple[str, ...] = ("pipelines.transforms", "pipelines.sinks")
ENV_VAR = "PIPEBOT_ALLOWED_MODULES"
ALIASES: dict[str, str] = {
    # The path the original design note uses for the Discord sink.
    "core.infra.discord_sink.DiscordSink": "pipelines.sinks.discord.DiscordSink",
}
"""Legacy class paths and the paths they now resolve to."""

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_module_name(name: str) -> bool:
    """Whether ``name`` is a dotted Python module name such as ``acme.plugins``."""
    return _DOTTED.fullmatch(name) is not None


def allowed_prefixes(
    config_modules: Iterable[str] = (), env: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Built-in prefixes, then ``config_modules``, then those of ``PIPEBOT_ALLOWED_MODULES``.

    ``env`` defaults to ``os.environ``. Duplicates are dropped; an entry that is not a
    module name raises ``RegistryError``.
    """
    modules = tuple(config_modules)
    environ = os.environ if env is None else env
    from_env = [part.strip() for part in environ.get(ENV_VAR, "").split(",") if part.strip()]
    for origin, names in (("allowed_modules", modules), (ENV_VAR, from_env)):
        for name in names:
            if not is_module_name(name):
                raise RegistryError(f"{origin}: {name!r} is not a dotted module name")
    return tuple(dict.fromkeys((*BUILTIN_PREFIXES, *modules, *from_env)))


def canonical_path(path: str) -> str:
    """The path a (possibly legacy) class path resolves to."""
    return ALIASES.get(path, path)


def is_allowed(module: str, allowed: Sequence[str]) -> bool:
    """Whether ``module`` is one of the ``allowed`` prefixes or inside one."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def resolve_class(path: str, allowed: Sequence[str]) -> type:
    """Import and return the Transform class at dotted ``path``.

    Raises ``RegistryError`` saying what is wrong: the path is malformed or outside
    ``allowed`` (checked before any import), the module or attribute is missing, or
    the attribute is not a Transform class.
    """
    target = canonical_path(path)
    if "." not in target or not is_module_name(target):
        raise RegistryError(f"{path!r} is not a dotted class path such as package.module.Class")
    module_name, _, attribute = target.rpartition(".")
    if not is_allowed(module_name, allowed):
        raise RegistryError(
            f"module {module_name} is not allowed (allowed: {', '.join(allowed)}); "
            f"add it to allowed_modules: in pipelines.yml or to {ENV_VAR}"
        )
    module = _import(module_name)
    if not hasattr(module, attribute):
        raise RegistryError(
            f"module {module_name} has no attribute {attribute}{_hint(module, attribute)}"
        )
    found = getattr(module, attribute)
    if not isinstance(found, type):
        raise RegistryError(f"{target} is not a class (it is {type(found).__name__})")
    _check_transform(found, target)
    logger.debug("resolved %s to %r", path, found)
    return found


def _import(module_name: str) -> object:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise RegistryError(f"module {module_name} not found") from exc
        raise RegistryError(f"importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # import-time code may raise anything
        raise RegistryError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc


def _hint(module: object, attribute: str) -> str:
    names = [name for name in dir(module) if not name.startswith("_")]
    close = difflib.get_close_matches(attribute, names, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _check_transform(cls: type, target: str) -> None:
    if transform_style(cls) is not None:
        return
    defined = [name for name in STYLES if callable(getattr(cls, name, None))]
    if defined:
        how = f"defines {' and '.join(defined)}"
    else:
        how = "defines none of them"
    raise RegistryError(
        f"{target} is not a Transform: it must define exactly one of "
        f"produce, process or stream, and {how}"
    )
