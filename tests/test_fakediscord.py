"""The fake Discord against the real discord.py client: a tiny bot defined here logs in, connects
to the fake gateway, syncs its commands and answers interactions the fake dispatches."""

from __future__ import annotations

import asyncio
import io
import time
import warnings
from typing import Any, cast

import aiohttp
import pytest

with warnings.catch_warnings():  # discord.py 2.x imports audioop, deprecated in 3.11+
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.ext import commands

from tests.fakediscord import FakeDiscord, running

pytest_plugins = ["tests.fakediscord.fixtures"]

PIPELINES = ["news", "newsletter", "weather", "prices"]
MESSAGES = "POST /channels/{channel_id}/messages"
CALLBACK = "POST /interactions/{interaction_id}/{token}/callback"
ORIGINAL = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/{message_id}"


# -- a tiny bot ----------------------------------------------------------------------------------


class TinyBot(commands.Bot):
    def __init__(self, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            guild_ready_timeout=0.05,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
        )
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.received: list[Any] = []
        self.errors: list[BaseException] = []

    async def setup_hook(self) -> None:
        slash: list[app_commands.Command[Any, ..., Any] | app_commands.Group] = [
            ping,
            run,
            slow,
            panel,
            ops,
            purge,
            report,
            chart,
            pipeline_group,
        ]
        for command in slash:
            self.tree.add_command(command)
        self.tree.error(self._on_tree_error)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        self.errors.append(error)
        if isinstance(error, app_commands.CheckFailure):
            await interaction.response.send_message("missing role", ephemeral=True)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY; nothing to pace against here."""

    async def hold(self) -> None:
        """Commands call this; tests close ``gate`` to keep the command waiting."""
        self.entered.set()
        await self.gate.wait()


def bot_of(interaction: discord.Interaction) -> TinyBot:
    return cast(TinyBot, interaction.client)


async def pipeline_names(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    if current == "many":
        return [app_commands.Choice(name=f"p{i}", value=f"p{i}") for i in range(30)]
    return [app_commands.Choice(name=p, value=p) for p in PIPELINES if p.startswith(current)]


@app_commands.command(description="Answer pong")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(f"pong {interaction.user.mention}")


@app_commands.command(description="Run a pipeline")
@app_commands.autocomplete(pipeline=pipeline_names)
async def run(interaction: discord.Interaction, pipeline: str, dry_run: bool = False) -> None:
    await interaction.response.defer(thinking=True)
    await bot_of(interaction).hold()
    await interaction.edit_original_response(content=f"ran {pipeline} (dry_run={dry_run})")
    await interaction.followup.send(f"log of {pipeline}", ephemeral=True)


@app_commands.command(description="Answer once the gate opens")
async def slow(interaction: discord.Interaction) -> None:
    await bot_of(interaction).hold()
    await interaction.response.send_message("done")


class ApproveView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(
        label="Approve", custom_id="panel:approve", style=discord.ButtonStyle.success
    )
    async def approve(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.edit_message(
            content=f"approved by {interaction.user.name}", view=None
        )

    @discord.ui.button(label="Later", custom_id="panel:later", disabled=True)
    async def later(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        raise AssertionError("a disabled button cannot be clicked")


@app_commands.command(description="Show an approval panel")
async def panel(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("Approve?", view=ApproveView())


@app_commands.command(description="Operators only")
@app_commands.checks.has_role("Pipeline Operator")
async def ops(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("ok", ephemeral=True)


@app_commands.command(description="Server managers only, by default")
@app_commands.default_permissions(manage_guild=True)
async def purge(interaction: discord.Interaction) -> None:
    await interaction.response.send_message(f"purged by {interaction.user.name}")


@app_commands.command(description="Answer with a file")
async def report(interaction: discord.Interaction) -> None:
    csv = discord.File(io.BytesIO(b"name,rows\nnews,3\n"), "report.csv")
    await interaction.response.send_message("report attached", file=csv)


@app_commands.command(description="Defer, then edit a file in, then a followup with a file")
async def chart(interaction: discord.Interaction) -> None:
    await interaction.response.defer(thinking=True)
    embed = discord.Embed(title="chart").set_image(url="attachment://chart.png")
    png = discord.File(io.BytesIO(b"\x89PNG-ish"), "chart.png")
    await interaction.edit_original_response(embed=embed, attachments=[png])
    data = discord.File(io.BytesIO(b"a,b\n"), "data.csv")
    await interaction.followup.send("data", file=data, ephemeral=True)


pipeline_group = app_commands.Group(name="pipeline", description="Pipelines")
admin_group = app_commands.Group(name="admin", description="Admin", parent=pipeline_group)


async def echo(interaction: discord.Interaction, value: Any) -> None:
    bot_of(interaction).received.append(value)
    await interaction.response.send_message(f"got {value!r}")


@pipeline_group.command(description="Status of a pipeline")
async def status(interaction: discord.Interaction, name: str) -> None:
    await echo(interaction, name)


@pipeline_group.command(description="Limit the run")
async def limit(interaction: discord.Interaction, count: app_commands.Range[int, 1, 10]) -> None:
    await echo(interaction, count)


@pipeline_group.command(description="Post to a channel")
async def post(interaction: discord.Interaction, channel: discord.TextChannel) -> None:
    await echo(interaction, channel)


@admin_group.command(description="Reset")
async def reset(interaction: discord.Interaction, confirm: bool) -> None:
    await echo(interaction, confirm)


def channel_of(bot: discord.Client, fake: FakeDiscord, name: str) -> discord.TextChannel:
    channel = bot.get_channel(int(fake.channel(name)["id"]))
    assert isinstance(channel, discord.TextChannel)
    return channel


async def raw(
    fake: FakeDiscord, method: str, path: str, body: Any, *, auth: bool = True
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {fake.token}"} if auth else {}
    async with aiohttp.ClientSession() as session:
        async with session.request(
            method, fake.api_base + path, json=body, headers=headers
        ) as resp:
            return resp.status, await resp.json() if resp.content_length else None


def too_long(limit: int) -> dict[str, Any]:
    return {
        "_errors": [
            {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {limit} or fewer in length."}
        ]
    }


# -- login and gateway ---------------------------------------------------------------------------


async def test_login_identify_ready_guild_create_and_heartbeats(fake_discord: FakeDiscord) -> None:
    fake_discord.gateway.heartbeat_interval_ms = 50
    bot = TinyBot()
    async with running(bot, fake_discord):
        me, app = fake_discord.requests[:2]
        assert (me.method, me.path, me.auth, me.status) == ("GET", "/users/@me", "valid", 200)
        assert "Authorization" not in me.headers and me.headers["User-Agent"].startswith(
            "DiscordBot"
        )
        assert app.path == "/oauth2/applications/@me"
        assert bot.user is not None and str(bot.user.id) == fake_discord.application_id
        assert bot.application_id == int(fake_discord.application_id)

        conn = fake_discord.gateway.connections[0]
        assert conn.path == "/gateway" and conn.identified
        assert conn.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        frames = fake_discord.gateway.frames
        assert (frames[0].direction, frames[0].op, frames[0].d) == (
            "send",
            10,
            {"heartbeat_interval": 50},
        )
        identify = next(f for f in frames if f.op == 2)
        assert identify.d["token"] == "<redacted>" and identify.d["intents"] == bot.intents.value
        sent = [f.t for f in frames if f.direction == "send" and f.op == 0]
        assert sent[:2] == ["READY", "GUILD_CREATE"]

        guild = bot.get_guild(int(fake_discord.guild.id))
        assert guild is not None and not guild.unavailable
        assert {c.name for c in guild.text_channels} == {"general", "ops"}
        assert guild.get_role(int(fake_discord.role("Pipeline Operator")["id"])) is not None
        assert guild.me is not None  # the bot's own member arrives without the members intent

        def beats() -> bool:
            received = sum(
                1 for f in fake_discord.gateway.frames if f.direction == "recv" and f.op == 1
            )
            acked = sum(
                1 for f in fake_discord.gateway.frames if f.direction == "send" and f.op == 11
            )
            return received >= 3 and acked >= 3

        await fake_discord.wait_for(beats)
        assert bot.latency < 1


async def test_bad_token_is_a_login_failure(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    try:
        with pytest.raises(discord.LoginFailure):
            await bot.login("not-the-token")
    finally:
        await bot.close()
    assert [(r.path, r.auth, r.status) for r in fake_discord.requests] == [
        ("/users/@me", "invalid", 401)
    ]
    assert [v.rule for v in fake_discord.take_violations()] == ["unauthorized"]


async def test_privileged_intent_not_enabled_closes_with_4014(fake_discord: FakeDiscord) -> None:
    fake_discord.privileged_intents = set()
    intents = discord.Intents.default()
    intents.members = True
    bot = TinyBot(intents)
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running(bot, fake_discord):
            pass
    assert fake_discord.gateway.connections[0].close_code == 4014


async def test_gateway_drop_resumes_and_replays_missed_events(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        session = fake_discord.gateway.session
        assert session is not None
        await fake_discord.drop_gateway(4000)
        # Created while the bot is away: Discord buffers it and replays it after RESUME.
        handle = await fake_discord.interact("ping")
        assert (await handle.response())["data"]["content"].startswith("pong")

        conns = fake_discord.gateway.connections
        assert [c.path for c in conns] == ["/gateway", "/resume"]
        assert conns[0].close_code == 4000 and conns[1].resumed and not conns[1].identified
        resume = next(f for f in fake_discord.gateway.frames if f.op == 6)
        assert resume.d == {"seq": resume.d["seq"], "session_id": session.id, "token": "<redacted>"}
        assert fake_discord.gateway.session is session
        replayed = [
            f for f in fake_discord.gateway.frames if f.conn_id == 2 and f.t == "INTERACTION_CREATE"
        ]
        assert len(replayed) == 1


async def test_abrupt_disconnect_and_op7_reconnect_both_resume(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        await fake_discord.drop_gateway(None)  # TCP cut, no close frame
        await fake_discord.wait_for(
            lambda: (
                len(fake_discord.gateway.connections) == 2
                and fake_discord.gateway.connections[1].resumed
            )
        )
        await fake_discord.request_reconnect()
        await fake_discord.wait_for(
            lambda: (
                len(fake_discord.gateway.connections) == 3
                and fake_discord.gateway.connections[2].resumed
            )
        )
        handle = await fake_discord.interact("ping")
        assert (await handle.response())["type"] == 4


async def test_invalid_session_makes_the_bot_identify_again(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        old = fake_discord.gateway.session
        await fake_discord.invalidate_session(resumable=False)
        await fake_discord.wait_for(lambda: fake_discord.gateway.session is not old)
        await fake_discord.wait_until_connected()
        assert fake_discord.gateway.connections[-1].path == "/gateway"
        assert fake_discord.gateway.connections[-1].identified
        handle = await fake_discord.interact("ping")
        assert (await handle.response())["type"] == 4


async def test_outage_fails_rest_refuses_gateway_then_recovers(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        general = channel_of(bot, fake_discord, "general")
        fake_discord.outage(True)
        with pytest.raises(discord.DiscordServerError) as info:
            await general.send("during the outage")
        assert info.value.status == 503
        await fake_discord.drop_gateway(4000)
        await fake_discord.wait_for(
            lambda: any(c.refused for c in fake_discord.gateway.connections)
        )
        fake_discord.outage(False)
        await fake_discord.wait_for(
            lambda: fake_discord.gateway.connections[-1].resumed, timeout=10
        )
        await general.send("after the outage")
        assert [m["content"] for m in fake_discord.messages(general.id)] == ["after the outage"]


# -- commands ------------------------------------------------------------------------------------


async def test_sync_records_the_bulk_overwrite_and_guild_commands_win(
    fake_discord: FakeDiscord,
) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        synced = await bot.tree.sync()
        put = fake_discord.requests_to("PUT /applications/{application_id}/commands")[0]
        assert put.params["application_id"] == fake_discord.application_id
        names = sorted(c["name"] for c in put.json)
        assert names == [
            "chart",
            "ops",
            "panel",
            "ping",
            "pipeline",
            "purge",
            "report",
            "run",
            "slow",
        ]
        run_options = next(c for c in put.json if c["name"] == "run")["options"]
        assert [
            (o["name"], o["type"], o["required"], o.get("autocomplete")) for o in run_options
        ] == [
            ("pipeline", 3, True, True),
            ("dry_run", 5, False, None),
        ]
        assert {c.id for c in synced} == {int(c["id"]) for c in fake_discord.commands()}

        guild = discord.Object(int(fake_discord.guild.id))
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        assert fake_discord.requests_to(
            "PUT /applications/{application_id}/guilds/{guild_id}/commands"
        )
        handle = await fake_discord.interact("ping")
        assert handle.payload["data"]["guild_id"] == fake_discord.guild.id
        assert (await handle.response())["type"] == 4


async def test_driver_refuses_what_the_discord_client_would_not_send(
    fake_discord: FakeDiscord,
) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        with pytest.raises(LookupError):
            await fake_discord.interact("ping")  # never synced
        await bot.tree.sync()
        refused: list[tuple[str, dict[str, Any]]] = [
            ("pipeline limit", {"count": 11}),  # Range[int, 1, 10]
            ("pipeline limit", {"count": "3"}),
            ("pipeline status", {}),  # required option missing
            ("pipeline status", {"name": "x", "extra": 1}),
            ("pipeline", {}),  # groups cannot be invoked
            ("pipeline post", {"channel": 123}),
        ]
        for command, options in refused:
            with pytest.raises(ValueError):
                await fake_discord.interact(command, options)


async def test_slash_command_answer_and_allowed_mentions(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        alice = fake_discord.user("alice")
        handle = await fake_discord.interact("ping", user=alice)
        response = await handle.response()
        assert response == {
            "type": 4,
            "data": {
                "tts": False,
                "content": f"pong <@{alice['id']}>",
                "allowed_mentions": {"parse": []},
            },
        }
        callback = handle.callbacks[0]
        assert callback.query == {"with_response": "1"} and callback.auth == "missing"
        original = await handle.original()
        assert (
            original["mentions"] == []
            and original["interaction_metadata"]["user"]["id"] == alice["id"]
        )
        assert fake_discord.messages(fake_discord.channel("general")) == [original]


async def test_defer_edit_original_and_ephemeral_followup(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.interact("run", {"pipeline": "news", "dry_run": True})
        assert handle.payload["data"]["options"] == [
            {"name": "pipeline", "type": 3, "value": "news"},
            {"name": "dry_run", "type": 5, "value": True},
        ]
        assert (await handle.response()) == {"type": 5}
        original = await handle.original()
        assert original["content"] == "ran news (dry_run=True)" and original["edited_timestamp"]
        (followup,) = await handle.wait_followups(1)
        assert followup["content"] == "log of news" and followup["flags"] & 64
        edit = fake_discord.requests_to(ORIGINAL)[0]
        assert (
            edit.params["message_id"] == "@original"
            and edit.params["webhook_id"] == fake_discord.application_id
        )
        assert edit.json == {
            "content": "ran news (dry_run=True)",
            "tts": False,
            "allowed_mentions": {"parse": []},
        }
        assert fake_discord.messages(fake_discord.channel("general")) == [
            original
        ]  # followup is ephemeral


async def test_autocomplete_and_its_25_choice_limit(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.autocomplete("run", "pipeline", "ne")
        assert handle.payload["type"] == 4
        assert handle.payload["data"]["options"] == [
            {"name": "pipeline", "type": 3, "value": "ne", "focused": True}
        ]
        assert await handle.response() == {
            "type": 8,
            "data": {
                "choices": [
                    {"name": "news", "value": "news"},
                    {"name": "newsletter", "value": "newsletter"},
                ]
            },
        }
        too_many = await fake_discord.autocomplete("run", "pipeline", "many")
        await too_many.response()
        assert too_many.callbacks[0].status == 400
        assert too_many.callbacks[0].response["errors"] == {"data": {"choices": too_long(25)}}
        assert [v.rule for v in fake_discord.take_violations()] == ["invalid_form_body"]


async def test_subcommand_groups_and_option_types(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        ops = fake_discord.channel("ops")
        handles = [
            await fake_discord.interact("pipeline status", {"name": "news"}),
            await fake_discord.interact("pipeline limit", {"count": 3}),
            await fake_discord.interact("pipeline post", {"channel": ops}),
            await fake_discord.interact("pipeline admin reset", {"confirm": True}),
        ]
        for handle in handles:
            await handle.response()
        assert handles[3].payload["data"]["options"] == [
            {
                "name": "admin",
                "type": 2,
                "options": [
                    {
                        "name": "reset",
                        "type": 1,
                        "options": [{"name": "confirm", "type": 5, "value": True}],
                    },
                ],
            },
        ]
        assert handles[2].payload["data"]["resolved"]["channels"][ops["id"]]["name"] == "ops"
        name, count, channel, confirm = bot.received
        assert (name, count, confirm) == ("news", 3, True)
        assert isinstance(channel, discord.TextChannel) and channel.name == "ops"


async def test_button_click_updates_the_message(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.interact("panel")
        message = await handle.original()
        assert [b["custom_id"] for b in message["components"][0]["components"]] == [
            "panel:approve",
            "panel:later",
        ]
        with pytest.raises(ValueError):
            await fake_discord.click(message, "panel:later")  # disabled
        with pytest.raises(ValueError):
            await fake_discord.click(message, "panel:nope")

        click = await fake_discord.click(message, "panel:approve", user=fake_discord.user("bob"))
        assert click.payload["data"] == {"custom_id": "panel:approve", "component_type": 2}
        assert (await click.response())["type"] == 7
        updated = fake_discord.message(message["id"])
        assert updated["content"] == "approved by bob" and updated["components"] == []
        assert (await click.original())["id"] == message["id"]


async def test_role_checks_see_the_members_roles(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        operator = await fake_discord.interact("ops", user=fake_discord.user("alice"))
        assert (await operator.response())["data"]["content"] == "ok"
        outsider = await fake_discord.interact("ops", user=fake_discord.user("bob"))
        assert (await outsider.response())["data"] == {
            "tts": False,
            "content": "missing role",
            "flags": 64,
            "allowed_mentions": {"parse": []},
        }
        promoted = await fake_discord.interact(
            "ops", user=fake_discord.user("bob"), roles=["Pipeline Operator"]
        )
        assert (await promoted.response())["data"]["content"] == "ok"
        assert [type(e) for e in bot.errors] == [app_commands.MissingRole]


async def test_default_member_permissions_keep_a_command_from_members_until_opened(
    fake_discord: FakeDiscord,
) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        for name in ("alice", "bob"):
            with pytest.raises(PermissionError, match="default_member_permissions"):
                await fake_discord.interact("purge", user=fake_discord.user(name))
        owner = await fake_discord.interact("purge", user=fake_discord.user("owner"))
        assert (await owner.response())["data"]["content"] == "purged by owner"
        fake_discord.set_role_permissions(fake_discord.role("Pipeline Operator"), 1 << 5)
        alice = await fake_discord.interact("purge", user=fake_discord.user("alice"))
        assert (await alice.response())["data"]["content"] == "purged by alice"
        fake_discord.open_command("purge")  # Server Settings → Integrations: everyone
        bob = await fake_discord.interact("purge", user=fake_discord.user("bob"))
        assert (await bob.response())["data"]["content"] == "purged by bob"


# -- enforced rules ------------------------------------------------------------------------------


async def test_first_response_after_3_seconds_is_unknown_interaction(
    fake_discord: FakeDiscord,
) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        bot.gate.clear()
        handle = await fake_discord.interact("slow")
        await asyncio.wait_for(bot.entered.wait(), 5)
        fake_discord.advance(3.5)
        bot.gate.set()
        await handle.response()
        assert handle.callbacks[0].status == 404
        assert handle.callbacks[0].response == {"message": "Unknown interaction", "code": 10062}
        (violation,) = fake_discord.take_violations()
        assert violation.rule == "late_response"
        await fake_discord.wait_for(lambda: bot.errors)
        cause = bot.errors[0].__cause__
        assert isinstance(cause, discord.NotFound) and cause.code == 10062


async def test_second_acknowledgement_is_rejected(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.interact("ping")
        await handle.response()
        path = f"/interactions/{handle.id}/{handle.token}/callback"
        status, body = await raw(
            fake_discord, "POST", path, {"type": 4, "data": {"content": "again"}}, auth=False
        )
        assert (status, body) == (
            400,
            {"message": "Interaction has already been acknowledged.", "code": 40060},
        )
        assert [r.status for r in fake_discord.requests_to(CALLBACK)] == [200, 400]
        assert [v.rule for v in fake_discord.take_violations()] == ["double_acknowledgement"]


async def test_interaction_token_expires_after_15_minutes(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        bot.gate.clear()
        handle = await fake_discord.interact("run", {"pipeline": "news"})
        assert await handle.response() == {"type": 5}  # deferred in time
        fake_discord.advance(15 * 60 + 1)
        bot.gate.set()
        edit = await fake_discord.wait_for_request(lambda r: f"{r.method} {r.route}" == ORIGINAL)
        assert (edit.status, edit.response) == (
            401,
            {"message": "Invalid Webhook Token", "code": 50027},
        )
        assert [v.rule for v in fake_discord.take_violations()] == ["token_expired"]
        await fake_discord.wait_for(lambda: bot.errors)
        cause = bot.errors[0].__cause__
        assert isinstance(cause, discord.HTTPException) and cause.code == 50027


async def test_message_limits_answer_invalid_form_body(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        general = channel_of(bot, fake_discord, "general")
        await general.send("x" * 2000)  # at the limit
        await general.send(embeds=[discord.Embed(description="d" * 600) for _ in range(10)])  # 6000
        fields = discord.Embed()
        for i in range(26):
            fields.add_field(name=f"f{i}", value="v")
        cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
            ({"content": "x" * 2001}, {"content": too_long(2000)}),
            (
                {"embed": discord.Embed(title="t" * 257)},
                {"embeds": {"0": {"title": too_long(256)}}},
            ),
            (
                {"embed": discord.Embed(description="d" * 4097)},
                {"embeds": {"0": {"description": too_long(4096)}}},
            ),
            ({"embed": fields}, {"embeds": {"0": {"fields": too_long(25)}}}),
            (
                {"embed": discord.Embed().add_field(name="n" * 257, value="v")},
                {"embeds": {"0": {"fields": {"0": {"name": too_long(256)}}}}},
            ),
            (
                {"embed": discord.Embed().add_field(name="n", value="v" * 1025)},
                {"embeds": {"0": {"fields": {"0": {"value": too_long(1024)}}}}},
            ),
            (
                {"embed": discord.Embed().add_field(name="n", value="")},
                {
                    "embeds": {
                        "0": {
                            "fields": {
                                "0": {
                                    "value": {
                                        "_errors": [
                                            {
                                                "code": "BASE_TYPE_REQUIRED",
                                                "message": "This field is required",
                                            }
                                        ]
                                    }
                                }
                            }
                        }
                    }
                },
            ),
            (
                {"embed": discord.Embed().set_footer(text="f" * 2049)},
                {"embeds": {"0": {"footer": {"text": too_long(2048)}}}},
            ),
            (
                {"embed": discord.Embed().set_author(name="a" * 257)},
                {"embeds": {"0": {"author": {"name": too_long(256)}}}},
            ),
            (
                {"embeds": [discord.Embed(description="d" * 3001) for _ in range(2)]},
                {
                    "embeds": {
                        "_errors": [
                            {
                                "code": "MAX_EMBED_SIZE_EXCEEDED",
                                "message": "Embed size exceeds maximum size of 6000",
                            }
                        ]
                    }
                },
            ),
        ]
        for kwargs, errors in cases:
            with pytest.raises(discord.HTTPException) as info:
                await general.send(**kwargs)
            assert (info.value.status, info.value.code) == (400, 50035)
            assert fake_discord.requests[-1].response == {
                "message": "Invalid Form Body",
                "code": 50035,
                "errors": errors,
            }

        path = f"/channels/{general.id}/messages"
        row = {"type": 1, "components": [{"type": 2, "style": 1, "label": "b", "custom_id": "b"}]}
        assert (await raw(fake_discord, "POST", path, {"embeds": [{"description": "d"}] * 11}))[1][
            "errors"
        ] == {"embeds": too_long(10)}
        assert (await raw(fake_discord, "POST", path, {"content": "c", "components": [row] * 6}))[
            1
        ]["errors"] == {"components": too_long(5)}
        assert await raw(fake_discord, "POST", path, {"content": ""}) == (
            400,
            {"message": "Cannot send an empty message", "code": 50006},
        )
        rules = [v.rule for v in fake_discord.take_violations()]
        assert rules == ["invalid_form_body"] * (len(cases) + 2) + ["empty_message"]
        assert len(fake_discord.messages(general.id)) == 2


async def test_unknown_and_forbidden_channels(fake_discord: FakeDiscord) -> None:
    secret = fake_discord.add_channel("secret", forbidden=True)
    announcements = fake_discord.add_channel("announcements", read_only=True)
    bot = TinyBot()
    async with running(bot, fake_discord):
        with pytest.raises(discord.NotFound) as unknown:
            await bot.fetch_channel(1234567890123456789)
        assert unknown.value.code == 10003
        with pytest.raises(discord.Forbidden) as hidden:
            await bot.fetch_channel(int(secret["id"]))
        assert (hidden.value.code, hidden.value.text) == (50001, "Missing Access")
        read_only = channel_of(bot, fake_discord, "announcements")
        assert not read_only.permissions_for(read_only.guild.me).send_messages
        with pytest.raises(discord.Forbidden) as denied:
            await read_only.send("hello")
        assert denied.value.code == 50013
        assert fake_discord.messages(announcements) == []


async def test_429_is_retried_after_retry_after(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        general = channel_of(bot, fake_discord, "general")
        fake_discord.rate_limit(MESSAGES, times=1, retry_after=0.25)
        await general.send("hello")
        limited, retried = fake_discord.requests_to(MESSAGES)
        assert (limited.status, retried.status) == (429, 200)
        assert limited.response == {
            "message": "You are being rate limited.",
            "retry_after": 0.25,
            "global": False,
        }
        assert limited.response_headers["Retry-After"] == "1"
        assert limited.response_headers["X-RateLimit-Scope"] == "user"
        assert limited.response_headers["X-RateLimit-Remaining"] == "0"
        assert retried.at - limited.at >= 0.25
        assert retried.json == limited.json  # the same body (and nonce) is retried
        assert limited.json["content"] == "hello" and limited.json["allowed_mentions"] == {
            "parse": []
        }

        fake_discord.rate_limit("POST /interactions/*", times=1, retry_after=0.1)
        handle = await fake_discord.interact("ping")
        await fake_discord.wait_for(lambda: any(c.status == 200 for c in handle.callbacks))
        assert [c.status for c in handle.callbacks] == [429, 200]


async def test_bucket_headers_are_honoured(fake_discord: FakeDiscord) -> None:
    fake_discord.bucket_limit, fake_discord.bucket_window = 2, 0.3
    bot = TinyBot()
    async with running(bot, fake_discord):
        general = channel_of(bot, fake_discord, "general")
        started = time.monotonic()
        for i in range(5):
            await general.send(f"message {i}")
        assert time.monotonic() - started >= 0.55  # two full windows waited out
        first = fake_discord.requests_to(MESSAGES)[0]
        assert first.response_headers["X-RateLimit-Limit"] == "2"
        assert first.response_headers["X-RateLimit-Remaining"] == "1"
        assert float(first.response_headers["X-RateLimit-Reset-After"]) <= 0.3
        assert len(fake_discord.messages(general.id)) == 5
    fake_discord.assert_no_violations()


# -- recording -----------------------------------------------------------------------------------


async def test_files_are_recorded_and_served(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        general = channel_of(bot, fake_discord, "general")
        sent = await general.send(
            "report", file=discord.File(io.BytesIO(b"a,b\n1,2\n"), "report.csv")
        )
        request = fake_discord.requests_to(MESSAGES)[0]
        assert request.headers["Content-Type"].startswith("multipart/form-data")
        assert request.json["content"] == "report"
        assert request.json["attachments"] == [{"id": 0, "filename": "report.csv"}]
        assert [(f.name, f.filename, f.data) for f in request.files] == [
            ("files[0]", "report.csv", b"a,b\n1,2\n")
        ]
        assert await sent.attachments[0].read() == b"a,b\n1,2\n"


async def test_file_in_an_interaction_response(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.interact("report")
        response = await handle.response()
        assert response["type"] == 4 and response["data"]["content"] == "report attached"
        (part,) = handle.callbacks[0].files
        assert (part.filename, part.data) == ("report.csv", b"name,rows\nnews,3\n")
        original = await handle.original()
        assert [a["filename"] for a in original["attachments"]] == ["report.csv"]


async def test_files_in_a_deferred_edit_and_a_followup(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.interact("chart")
        assert (await handle.response()) == {"type": 5}
        original = await handle.original()
        (attachment,) = original["attachments"]
        assert attachment["filename"] == "chart.png" and attachment["size"] == 8
        # The embed's attachment:// image now points at the uploaded file, as on Discord.
        assert original["embeds"][0]["image"]["url"] == attachment["url"]
        async with aiohttp.ClientSession() as session:
            async with session.get(attachment["url"]) as resp:
                assert await resp.read() == b"\x89PNG-ish"
        edit = fake_discord.requests_to(ORIGINAL)[0]
        assert edit.headers["Content-Type"].startswith("multipart/form-data")
        assert [(f.name, f.filename) for f in edit.files] == [("files[0]", "chart.png")]
        (followup,) = await handle.wait_followups(1)
        assert [a["filename"] for a in followup["attachments"]] == ["data.csv"]
        assert followup["flags"] & 64
    fake_discord.assert_no_violations()


async def test_dm_fetch_routes_and_message_create_echo(fake_discord: FakeDiscord) -> None:
    bot = TinyBot()
    async with running(bot, fake_discord):
        alice = fake_discord.user("alice")
        user = await bot.fetch_user(int(alice["id"]))
        dm = await user.send("your pipeline failed")
        assert fake_discord.requests_to("POST /users/@me/channels")[0].json == {
            "recipient_id": user.id
        }
        assert fake_discord.messages(dm.channel.id)[0]["content"] == "your pipeline failed"
        guild = await bot.fetch_guild(int(fake_discord.guild.id))
        member = await guild.fetch_member(int(alice["id"]))
        assert [r.name for r in member.roles] == ["@everyone", "Pipeline Operator"]
        with pytest.raises(discord.NotFound):
            await guild.fetch_member(1234567890123456789)

        general = channel_of(bot, fake_discord, "general")
        sent = await general.send("hello")
        await fake_discord.wait_for(
            lambda: bot.get_partial_messageable(general.id) and sent in bot.cached_messages
        )
        echoes = [f for f in fake_discord.gateway.frames if f.t == "MESSAGE_CREATE"]
        assert echoes[-1].d["id"] == str(
            sent.id
        )  # GUILD_MESSAGES intent: the bot sees its own message


async def test_members_intent_delivers_all_members(fake_discord: FakeDiscord) -> None:
    intents = discord.Intents.default()
    intents.members = True
    bot = TinyBot(intents)
    async with running(bot, fake_discord):
        guild = bot.get_guild(int(fake_discord.guild.id))
        assert guild is not None and guild.chunked
        alice = guild.get_member(int(fake_discord.user("alice")["id"]))
        assert alice is not None and [r.name for r in alice.roles] == [
            "@everyone",
            "Pipeline Operator",
        ]
        bob = fake_discord.user("bob")
        fake_discord.set_roles(bob, [fake_discord.role("Pipeline Operator")])
        await fake_discord.wait_for(
            lambda: (m := guild.get_member(int(bob["id"]))) is not None and len(m.roles) == 2
        )  # GUILD_MEMBER_UPDATE reached the bot


async def test_channel_webhook_execute(fake_discord: FakeDiscord) -> None:
    webhook_info = fake_discord.add_webhook(fake_discord.channel("ops"))
    bot = TinyBot()
    async with running(bot, fake_discord):
        webhook = discord.Webhook.from_url(webhook_info["url"], client=bot)
        message = await webhook.send("from a sink", username="pipebot-sink", wait=True)
        request = fake_discord.requests_to("POST /webhooks/{webhook_id}/{webhook_token}")[0]
        assert request.query["wait"] == "1" and request.auth == "missing"
        assert message.webhook_id == int(webhook_info["id"])
        stored = fake_discord.messages(fake_discord.channel("ops"))[0]
        assert (stored["content"], stored["author"]["username"]) == ("from a sink", "pipebot-sink")
        bad = discord.Webhook.partial(int(webhook_info["id"]), "x" * 68, client=bot)
        with pytest.raises(discord.HTTPException) as info:
            await bad.send("nope")
        assert info.value.code == 50027
        assert [v.rule for v in fake_discord.take_violations()] == ["invalid_webhook_token"]


async def test_violations_fail_loudly() -> None:
    fake = FakeDiscord()
    fake.violation("late_response", 404, {"code": 10062}, "first response after 3.50s")
    with pytest.raises(AssertionError, match="late_response"):
        fake.assert_no_violations()
    assert [v.rule for v in fake.take_violations()] == ["late_response"]
    fake.assert_no_violations()
