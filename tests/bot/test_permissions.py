"""Who may use the bot: pure decisions over guild, role and user ids."""

from __future__ import annotations

from bot.permissions import (
    ADMIN_REFUSAL,
    DM_REFUSAL,
    GUILD_REFUSAL,
    admin_refusal,
    guild_allowed,
    guild_refusal,
    is_admin,
)
from bot.settings import BotSettings

NOBODY: frozenset[int] = frozenset()


def test_guild_gate() -> None:
    assert guild_allowed(1, NOBODY)  # no list: every server
    assert guild_allowed(1, frozenset({1, 2}))
    assert not guild_allowed(3, frozenset({1, 2}))
    assert not guild_allowed(None, NOBODY)  # DMs: never


def test_guild_refusals() -> None:
    settings = BotSettings(guild_ids=frozenset({10}))
    assert guild_refusal(10, settings) is None
    assert guild_refusal(11, settings) == GUILD_REFUSAL
    assert guild_refusal(None, settings) == DM_REFUSAL
    assert guild_refusal(11, BotSettings()) is None
    assert guild_refusal(11, BotSettings(guild_id=10)) == GUILD_REFUSAL


def test_with_no_admin_lists_the_server_permission_is_the_only_gate() -> None:
    assert is_admin(1, [], admin_user_ids=NOBODY, admin_role_ids=NOBODY)


def test_admin_by_user_or_role() -> None:
    users, roles = frozenset({100}), frozenset({7, 8})
    assert is_admin(100, [], admin_user_ids=users, admin_role_ids=roles)
    assert is_admin(200, [1, 8], admin_user_ids=users, admin_role_ids=roles)
    assert not is_admin(200, [1, 2], admin_user_ids=users, admin_role_ids=roles)
    assert not is_admin(200, [], admin_user_ids=users, admin_role_ids=NOBODY)
    assert is_admin(200, [7], admin_user_ids=NOBODY, admin_role_ids=roles)


def test_admin_refusal_reads_the_settings() -> None:
    settings = BotSettings(admin_role_ids=frozenset({5}))
    assert admin_refusal(1, [5], settings) is None
    assert admin_refusal(1, [6], settings) == ADMIN_REFUSAL
    assert admin_refusal(1, [], BotSettings()) is None
