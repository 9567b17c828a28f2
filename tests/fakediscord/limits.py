"""Discord's message, embed, component and autocomplete limits, reported the way Discord does.

Each ``check_*`` function returns ``None`` when the payload is valid, or the ``errors`` object of
Discord's ``{"code": 50035, "message": "Invalid Form Body", "errors": {...}}`` response, e.g.
``{"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer
in length."}]}}``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakediscord.payloads import IS_COMPONENTS_V2

JSON = dict[str, Any]

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_TEXT_MAX = 2048
AUTHOR_NAME_MAX = 256
ACTION_ROWS_MAX = 5
ROW_ITEMS_MAX = 5
COMPONENTS_V2_MAX = 40
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
CHOICES_MAX = 25
CHOICE_NAME_MAX = 100

_MENTION_PARSE = {"users", "roles", "everyone"}


def _error(code: str, message: str) -> JSON:
    return {"_errors": [{"code": code, "message": message}]}


def _too_long(limit: int) -> JSON:
    return _error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _required() -> JSON:
    return _error("BASE_TYPE_REQUIRED", "This field is required")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def embed_size(embed: JSON) -> int:
    """Characters counted toward the 6000 limit (title, description, fields, footer, author)."""
    size = len(_text(embed.get("title"))) + len(_text(embed.get("description")))
    for field in embed.get("fields") or []:
        size += len(_text(field.get("name"))) + len(_text(field.get("value")))
    size += len(_text((embed.get("footer") or {}).get("text")))
    size += len(_text((embed.get("author") or {}).get("name")))
    return size


def _check_embed(embed: JSON) -> JSON:
    errors: JSON = {}
    for key, limit in (("title", EMBED_TITLE_MAX), ("description", EMBED_DESCRIPTION_MAX)):
        if len(_text(embed.get(key))) > limit:
            errors[key] = _too_long(limit)
    fields = embed.get("fields") or []
    if len(fields) > EMBED_FIELDS_MAX:
        errors["fields"] = _too_long(EMBED_FIELDS_MAX)
    for index, field in enumerate(fields[:EMBED_FIELDS_MAX]):
        field_errors: JSON = {}
        for key, limit in (("name", FIELD_NAME_MAX), ("value", FIELD_VALUE_MAX)):
            text = _text(field.get(key))
            if not text.strip():
                field_errors[key] = _required()
            elif len(text) > limit:
                field_errors[key] = _too_long(limit)
        if field_errors:
            errors.setdefault("fields", {})[str(index)] = field_errors
    for key, sub, limit in (
        ("footer", "text", FOOTER_TEXT_MAX),
        ("author", "name", AUTHOR_NAME_MAX),
    ):
        if len(_text((embed.get(key) or {}).get(sub))) > limit:
            errors[key] = {sub: _too_long(limit)}
    return errors


def _check_embeds(embeds: list[JSON]) -> JSON | None:
    if len(embeds) > EMBEDS_MAX:
        return _too_long(EMBEDS_MAX)
    errors: JSON = {str(i): e for i, embed in enumerate(embeds) if (e := _check_embed(embed))}
    if errors:
        return errors
    if sum(embed_size(embed) for embed in embeds) > EMBED_TOTAL_MAX:
        return _error(
            "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"
        )
    return None


def _check_component(component: JSON) -> JSON:
    errors: JSON = {}
    if len(_text(component.get("custom_id"))) > CUSTOM_ID_MAX:
        errors["custom_id"] = _too_long(CUSTOM_ID_MAX)
    if component.get("type") == 2 and len(_text(component.get("label"))) > BUTTON_LABEL_MAX:
        errors["label"] = _too_long(BUTTON_LABEL_MAX)
    if len(component.get("options") or []) > CHOICES_MAX:
        errors["options"] = _too_long(CHOICES_MAX)
    return errors


def _count_components(components: list[JSON]) -> int:
    return sum(1 + _count_components(c.get("components") or []) for c in components)


def _check_components(components: list[JSON], flags: int) -> JSON | None:
    if flags & IS_COMPONENTS_V2:
        if _count_components(components) > COMPONENTS_V2_MAX:
            return _error(
                "BASE_TYPE_MAX_LENGTH", f"Must be {COMPONENTS_V2_MAX} or fewer in length."
            )
        return None
    if len(components) > ACTION_ROWS_MAX:
        return _too_long(ACTION_ROWS_MAX)
    errors: JSON = {}
    for index, row in enumerate(components):
        children = row.get("components") or []
        row_errors: JSON = {}
        if len(children) > ROW_ITEMS_MAX:
            row_errors["components"] = _too_long(ROW_ITEMS_MAX)
        else:
            child_errors = {str(i): e for i, c in enumerate(children) if (e := _check_component(c))}
            if child_errors:
                row_errors["components"] = child_errors
        if row_errors:
            errors[str(index)] = row_errors
    return errors or None


def _check_allowed_mentions(allowed: JSON) -> JSON | None:
    parse = allowed.get("parse") or []
    unknown = [p for p in parse if p not in _MENTION_PARSE]
    if unknown:
        return {
            "parse": _error("BASE_TYPE_CHOICES", f"Value must be one of {sorted(_MENTION_PARSE)}.")
        }
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            return _error(
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
    return None


def check_message(body: JSON) -> JSON | None:
    """Validate a message create/edit body (channel message, webhook, interaction data)."""
    errors: JSON = {}
    flags = int(body.get("flags") or 0)
    content = body.get("content")
    if content is not None and len(str(content)) > CONTENT_MAX:
        errors["content"] = _too_long(CONTENT_MAX)
    if (embeds_error := _check_embeds(body.get("embeds") or [])) is not None:
        errors["embeds"] = embeds_error
    if (components_error := _check_components(body.get("components") or [], flags)) is not None:
        errors["components"] = components_error
    if flags & IS_COMPONENTS_V2 and (content or body.get("embeds")):
        errors.setdefault(
            "content",
            _error(
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using "
                "MessageFlags.IS_COMPONENTS_V2",
            ),
        )
    if (allowed := body.get("allowed_mentions")) is not None:
        if (mentions_error := _check_allowed_mentions(allowed)) is not None:
            errors["allowed_mentions"] = mentions_error
    return errors or None


def is_empty_message(body: JSON, file_count: int) -> bool:
    """Discord answers 50006 "Cannot send an empty message" for these on create."""
    return not (
        body.get("content")
        or body.get("embeds")
        or body.get("components")
        or body.get("sticker_ids")
        or body.get("poll")
        or file_count
    )


def check_autocomplete(data: JSON) -> JSON | None:
    choices = data.get("choices")
    if choices is None:
        return {"choices": _required()}
    if len(choices) > CHOICES_MAX:
        return {"choices": _too_long(CHOICES_MAX)}
    errors: JSON = {}
    for index, choice in enumerate(choices):
        choice_errors: JSON = {}
        name = _text(choice.get("name"))
        if not 1 <= len(name) <= CHOICE_NAME_MAX:
            choice_errors["name"] = _error(
                "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {CHOICE_NAME_MAX} in length."
            )
        value = choice.get("value")
        if isinstance(value, str) and len(value) > CHOICE_NAME_MAX:
            choice_errors["value"] = _too_long(CHOICE_NAME_MAX)
        if choice_errors:
            errors[str(index)] = choice_errors
    return {"choices": errors} if errors else None


COMMANDS_MAX = 100
COMMAND_OPTIONS_MAX = 25
COMMAND_DESCRIPTION_MAX = 100
_NAME_RE = re.compile(r"^[-_\w]{1,32}$")


def _check_name(name: Any, *, chat_input: bool) -> JSON | None:
    text = _text(name)
    if chat_input and (not _NAME_RE.match(text) or text != text.lower()):
        return _error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    if not 1 <= len(text) <= 32:
        return _error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    return None


def _check_description(description: Any) -> JSON | None:
    if not 1 <= len(_text(description)) <= COMMAND_DESCRIPTION_MAX:
        return _error(
            "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {COMMAND_DESCRIPTION_MAX} in length."
        )
    return None


def _check_options(options: list[JSON]) -> JSON | None:
    if len(options) > COMMAND_OPTIONS_MAX:
        return _too_long(COMMAND_OPTIONS_MAX)
    errors: JSON = {}
    seen: set[str] = set()
    for index, option in enumerate(options):
        option_errors: JSON = {}
        if (name_error := _check_name(option.get("name"), chat_input=True)) is not None:
            option_errors["name"] = name_error
        elif option["name"] in seen:
            option_errors["name"] = _error(
                "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Option name already exists"
            )
        seen.add(_text(option.get("name")))
        if (desc_error := _check_description(option.get("description"))) is not None:
            option_errors["description"] = desc_error
        if len(option.get("choices") or []) > CHOICES_MAX:
            option_errors["choices"] = _too_long(CHOICES_MAX)
        if (nested := _check_options(option.get("options") or [])) is not None:
            option_errors["options"] = nested
        if option_errors:
            errors[str(index)] = option_errors
    return errors or None


def check_commands(commands: Any) -> JSON | None:
    """Validate a bulk-overwrite body (``PUT /applications/{id}[/guilds/{id}]/commands``)."""
    if not isinstance(commands, list):
        return _error("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
    if len(commands) > COMMANDS_MAX:
        return _too_long(COMMANDS_MAX)
    errors: JSON = {}
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        kind = int(command.get("type", 1))
        command_errors: JSON = {}
        if (name_error := _check_name(command.get("name"), chat_input=kind == 1)) is not None:
            command_errors["name"] = name_error
        elif (kind, command["name"]) in seen:
            command_errors["name"] = _error(
                "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        seen.add((kind, _text(command.get("name"))))
        if kind == 1:
            if (desc_error := _check_description(command.get("description"))) is not None:
                command_errors["description"] = desc_error
            if (options_error := _check_options(command.get("options") or [])) is not None:
                command_errors["options"] = options_error
        if command_errors:
            errors[str(index)] = command_errors
    return errors or None
