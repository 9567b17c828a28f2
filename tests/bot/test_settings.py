"""BotSettings.from_env: parsing, errors that name the variable, the masked token."""

from __future__ import annotations

import logging
import pickle

import pytest

from bot.errors import BotError, SettingsError
from bot.settings import BotSettings
from pipelines.secret import MASK, Secret

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDe.abcdefghijklmnopqrstuvwxyz0123456789"


def test_empty_environment_means_no_bot() -> None:
    settings = BotSettings.from_env({})
    assert settings.token is None
    assert not settings.enabled
    assert settings.guild_id is None
    assert settings.guild_ids == frozenset()
    assert settings.allowed_guild_ids == frozenset()
    assert settings.alert_channel_id is None


def test_every_variable_is_parsed() -> None:
    settings = BotSettings.from_env(
        {
            "DISCORD_TOKEN": f"  {TOKEN}\n",
            "DISCORD_GUILD_ID": "111",
            "DISCORD_GUILD_IDS": "222, 333,,",
            "DISCORD_ADMIN_ROLE_IDS": "444",
            "DISCORD_ADMIN_USER_IDS": " 555 , 666 ",
            "DISCORD_ALERT_CHANNEL_ID": "777",
            "DISCORD_AUDIT_CHANNEL_ID": "888",
        }
    )
    assert settings.token is not None and settings.token.get_secret_value() == TOKEN
    assert settings.enabled
    assert settings.guild_id == 111
    assert settings.guild_ids == {222, 333}
    assert settings.allowed_guild_ids == {111, 222, 333}
    assert settings.admin_role_ids == {444}
    assert settings.admin_user_ids == {555, 666}
    assert (settings.alert_channel_id, settings.audit_channel_id) == (777, 888)


def test_guild_id_alone_limits_the_bot_to_that_server() -> None:
    assert BotSettings.from_env({"DISCORD_GUILD_ID": "42"}).allowed_guild_ids == {42}


def test_bot_prefix_is_dropped_and_blank_token_is_none() -> None:
    assert BotSettings.from_env({"DISCORD_TOKEN": f"Bot {TOKEN}"}).token == Secret(TOKEN)
    assert BotSettings.from_env({"DISCORD_TOKEN": "   "}).token is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DISCORD_GUILD_ID", "abc"),
        ("DISCORD_GUILD_ID", "-5"),
        ("DISCORD_GUILD_ID", "0"),
        ("DISCORD_GUILD_IDS", "1,two,3"),
        ("DISCORD_ADMIN_ROLE_IDS", "1.5"),
        ("DISCORD_ADMIN_USER_IDS", "<@123>"),
        ("DISCORD_ALERT_CHANNEL_ID", str(2**64)),
        ("DISCORD_AUDIT_CHANNEL_ID", "12 34"),
    ],
)
def test_a_malformed_id_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        BotSettings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert isinstance(caught.value, BotError)


def test_a_token_with_whitespace_is_refused_without_showing_it() -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN") as caught:
        BotSettings.from_env({"DISCORD_TOKEN": "abc def"})
    assert "abc" not in str(caught.value)


def test_secret_is_masked_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(TOKEN)
    settings = BotSettings(token=secret)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        format(secret, ""),
        repr(settings),
        str(settings),
        str([secret]),
        str({"token": secret}),
    ]
    for text in shown:
        assert TOKEN not in text
    assert MASK in str(secret)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings %s token %r", settings, secret)
    assert TOKEN not in caplog.text
    assert secret.get_secret_value() == TOKEN


def test_secret_cannot_be_pickled_and_compares_by_value() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret(TOKEN))
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert len({Secret("a"), Secret("a")}) == 1
    assert not Secret("")


def test_settings_are_frozen() -> None:
    settings = BotSettings.from_env({})
    with pytest.raises(AttributeError):
        settings.guild_id = 5  # type: ignore[misc]
