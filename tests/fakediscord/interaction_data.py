"""Build INTERACTION_CREATE ``data`` the way the Discord client would, from the commands the bot
registered (bulk overwrite) with the fake.

The Discord client only lets a user invoke a command that exists, with options of the
registered types, within choices and ranges, with every required option filled; a test asking
for anything else gets ``ValueError`` here rather than a payload real Discord would never send.
"""

from __future__ import annotations

from typing import Any

from tests.fakediscord.state import GuildState

JSON = dict[str, Any]

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = (
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
)


def find_command(commands: list[JSON], name: str) -> JSON | None:
    return next((c for c in commands if c["name"] == name and c.get("type", 1) == 1), None)


def _snowflake_of(value: Any) -> str:
    if isinstance(value, dict):
        inner = value.get("user", value)
        return str(inner["id"])
    if isinstance(value, int | str) and str(value).isdigit():
        return str(value)
    raise ValueError(f"expected an id or a payload dict, got {value!r}")


class OptionBuilder:
    """Turns ``{"name": value}`` into typed option objects plus ``resolved`` data."""

    def __init__(self, guild: GuildState | None, users: dict[str, JSON], *, focused: str | None):
        self.guild = guild
        self.users = users
        self.focused = focused
        self.resolved: dict[str, dict[str, JSON]] = {}

    def build(self, schema: list[JSON], values: dict[str, Any]) -> list[JSON]:
        by_name = {opt["name"]: opt for opt in schema}
        unknown = set(values) - set(by_name)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; registered: {sorted(by_name)}")
        if self.focused is None:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
            if missing:
                raise ValueError(f"required option(s) {missing} not given")
        elif self.focused not in by_name:
            raise ValueError(f"focused option {self.focused!r} is not an option of this command")
        return [self._option(by_name[name], value) for name, value in values.items()]

    def _option(self, schema: JSON, value: Any) -> JSON:
        kind = schema["type"]
        option: JSON = {"name": schema["name"], "type": kind}
        if schema["name"] == self.focused:
            if not schema.get("autocomplete"):
                raise ValueError(f"option {schema['name']!r} does not have autocomplete enabled")
            option.update(value=str(value), focused=True)
            return option
        option["value"] = self._value(schema, value)
        return option

    def _value(self, schema: JSON, value: Any) -> Any:
        kind = schema["type"]
        name = schema["name"]
        if kind in (STRING, INTEGER, NUMBER):
            value = self._scalar(schema, value)
            choices = schema.get("choices")
            if choices and value not in [c["value"] for c in choices]:
                raise ValueError(f"{name}={value!r} is not one of the choices {choices}")
            return value
        if kind == BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
            return value
        if kind in (USER, CHANNEL, ROLE, MENTIONABLE):
            return self._resolve(schema, _snowflake_of(value))
        raise ValueError(f"option type {kind} of {name!r} is not supported by the fake")

    def _scalar(self, schema: JSON, value: Any) -> Any:
        kind, name = schema["type"], schema["name"]
        if kind == STRING:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a str, got {value!r}")
            if not schema.get("min_length", 0) <= len(value) <= schema.get("max_length", 6000):
                raise ValueError(f"{name}={value!r} is outside its length limits")
            return value
        ok = isinstance(value, int) if kind == INTEGER else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            raise ValueError(f"{name} must be {'an int' if kind == INTEGER else 'a number'}")
        low, high = schema.get("min_value"), schema.get("max_value")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"{name}={value!r} is outside [{low}, {high}]")
        return value

    def _resolve(self, schema: JSON, snowflake: str) -> str:
        kind, guild = schema["type"], self.guild
        if kind in (USER, MENTIONABLE) and snowflake in self.users:
            self.resolved.setdefault("users", {})[snowflake] = self.users[snowflake]
            if guild is not None and snowflake in guild.members:
                member = {
                    k: v
                    for k, v in guild.members[snowflake].items()
                    if k not in ("user", "deaf", "mute")
                }
                member["permissions"] = str(guild.permissions(snowflake))
                self.resolved.setdefault("members", {})[snowflake] = member
            return snowflake
        if guild is not None and kind in (ROLE, MENTIONABLE) and snowflake in guild.roles:
            self.resolved.setdefault("roles", {})[snowflake] = guild.roles[snowflake]
            return snowflake
        if guild is not None and kind == CHANNEL and snowflake in guild.channels:
            channel = guild.channels[snowflake]
            types = schema.get("channel_types")
            if types and channel["type"] not in types:
                raise ValueError(
                    f"channel type {channel['type']} not in {types} for {schema['name']!r}"
                )
            resolved = {k: channel[k] for k in ("id", "name", "type", "parent_id", "guild_id")}
            resolved["permissions"] = str(guild.permissions(self._bot_id(), channel))
            self.resolved.setdefault("channels", {})[snowflake] = resolved
            return snowflake
        raise ValueError(f"{snowflake} is not a known target for option {schema['name']!r}")

    def _bot_id(self) -> str:
        assert self.guild is not None
        return next(
            uid for uid, u in self.users.items() if u.get("bot") and uid in self.guild.members
        )


def command_data(
    command: JSON,
    path: list[str],
    values: dict[str, Any],
    builder: OptionBuilder,
    guild_id: str | None,
) -> JSON:
    """``data`` of a type 2 (or type 4 autocomplete) interaction for ``/command sub... options``."""
    schema = command.get("options") or []
    chain: list[JSON] = []
    for name in path:
        node = next(
            (
                o
                for o in schema
                if o["name"] == name and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
            ),
            None,
        )
        if node is None:
            raise ValueError(f"/{command['name']} has no subcommand (group) {name!r}")
        chain.append({"name": name, "type": node["type"], "options": []})
        schema = node.get("options") or []
    if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in schema):
        raise ValueError(f"/{' '.join([command['name'], *path])} needs a subcommand")
    options = builder.build(schema, values)
    for node in reversed(chain):
        node["options"] = options
        options = [node]
    data: JSON = {"id": command["id"], "name": command["name"], "type": 1, "options": options}
    if builder.resolved:
        data["resolved"] = builder.resolved
    if guild_id is not None:
        data["guild_id"] = guild_id
    return data


def find_component(components: list[JSON], custom_id: str) -> JSON | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        found = find_component(component.get("components") or [], custom_id)
        if found is None and isinstance(component.get("accessory"), dict):
            found = find_component([component["accessory"]], custom_id)
        if found is not None:
            return found
    return None
