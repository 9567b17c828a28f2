"""Interaction callbacks and webhook routes, where the interaction rules are enforced.

* The first callback must come within 3 s of dispatch, else 404 10062 "Unknown interaction".
* One acknowledgement per interaction: a second callback is 400 40060.
* The callback type must suit the interaction type (8 only for autocomplete, 6/7 only for
  components and modals...), else 400 50035.
* Followups and ``@original`` edits use the interaction token for 15 minutes, then
  401 50027 "Invalid Webhook Token"; before the acknowledgement they are 404 10015.
* Message and autocomplete bodies are checked against Discord's limits (``limits.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakediscord import errors, limits, payloads
from tests.fakediscord.errors import json_response, no_content
from tests.fakediscord.messages import CREATE_FLAGS
from tests.fakediscord.rest import REC, channel_guard, validate_message
from tests.fakediscord.state import FilePart, InteractionRecord, RecordedRequest

if TYPE_CHECKING:
    from tests.fakediscord.server import FakeDiscord

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Target = InteractionRecord | JSON  # an interaction (application webhook) or a channel webhook

RESPONSE_WINDOW = 3.0
TOKEN_TTL = 15 * 60.0
CALLBACK_TYPES = {2: (4, 5, 9), 3: (4, 5, 6, 7, 9), 4: (8,), 5: (4, 5, 6, 7)}
CHAT_INPUT_COMMAND = 20


class WebhookApi:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake

    def routes(self) -> list[tuple[str, str, Handler]]:
        webhook = "/webhooks/{webhook_id}/{webhook_token}"
        return [
            ("POST", "/interactions/{interaction_id}/{token}/callback", self.callback),
            ("GET", webhook, self.get_webhook),
            ("POST", webhook, self.execute),
            ("GET", webhook + "/messages/{message_id}", self.get_message),
            ("PATCH", webhook + "/messages/{message_id}", self.edit_message),
            ("DELETE", webhook + "/messages/{message_id}", self.delete_message),
        ]

    # -- POST /interactions/{id}/{token}/callback -----------------------------------------------

    async def callback(self, request: web.Request) -> web.StreamResponse:
        rec, fake = request[REC], self.fake
        record = fake.interactions.get(request.match_info["interaction_id"])
        if record is None or record.token != request.match_info["token"]:
            return fake.reject(rec, "unknown_interaction", errors.UNKNOWN_INTERACTION)
        if record.acked_with is not None:
            return fake.reject(rec, "double_acknowledgement", errors.ALREADY_ACKNOWLEDGED)
        delay = fake.now() - record.created_at
        if delay > RESPONSE_WINDOW:
            detail = f"first response {delay:.2f}s after dispatch (limit {RESPONSE_WINDOW}s)"
            return fake.reject(rec, "late_response", errors.UNKNOWN_INTERACTION, detail=detail)
        body = rec.json if isinstance(rec.json, dict) else {}
        kind: Any = body.get("type")
        data: JSON = body.get("data") or {}
        if (invalid := self._check_callback(rec, record, kind, data)) is not None:
            return invalid
        record.acked_with, record.acked_at = kind, fake.now()
        resource = self._resource(record, kind, data, rec.files)
        if rec.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        return json_response(self._callback_response(record, kind, resource))

    def _check_callback(
        self, rec: RecordedRequest, record: InteractionRecord, kind: Any, data: JSON
    ) -> web.Response | None:
        allowed = CALLBACK_TYPES.get(record.type, ())
        if kind not in allowed:
            problem = {"code": "BASE_TYPE_CHOICES", "message": f"Value must be one of {allowed}."}
            detail = f"callback type {kind} for an interaction of type {record.type}"
            found = {"type": {"_errors": [problem]}}
            rule = "invalid_callback_type"
            return self.fake.reject(rec, rule, errors.INVALID_FORM_BODY, found, detail=detail)
        if kind == 8 and (problems := limits.check_autocomplete(data)) is not None:
            found = {"data": problems}
            return self.fake.reject(rec, "invalid_form_body", errors.INVALID_FORM_BODY, found)
        if kind in (4, 7):
            return validate_message(self.fake, rec, data, creating=kind == 4, under="data")
        return None

    def _resource(
        self, record: InteractionRecord, kind: int, data: JSON, files: list[FilePart]
    ) -> JSON | None:
        """Apply the callback: 4/5 create the original response, 6/7 target the clicked message."""
        store = self.fake.store
        if kind in (4, 5):
            body = (
                data if kind == 4 else {"flags": int(data.get("flags") or 0) & payloads.EPHEMERAL}
            )
            message = store.create(
                record.channel_id,
                body,
                files,
                author=self.fake.bot,
                guild_id=record.guild_id,
                flags_mask=CREATE_FLAGS | payloads.EPHEMERAL,
                type=CHAT_INPUT_COMMAND if record.type == 2 else 0,
                webhook_id=self.fake.application_id,
                application_id=self.fake.application_id,
            )
            message["interaction_metadata"] = {
                "id": record.id,
                "type": record.type,
                "user": record.payload["member"]["user"],
                "authorizing_integration_owners": {"0": record.guild_id},
            }
            if kind == 5:
                message["flags"] |= payloads.LOADING
            record.original_id = message["id"]
            return message
        if kind in (6, 7) and record.source_message_id is not None:
            record.original_id = record.source_message_id
            source = store.by_id[record.source_message_id]
            return store.edit(source, data, files) if kind == 7 else None
        return None

    def _callback_response(
        self, record: InteractionRecord, kind: int, resource: JSON | None
    ) -> JSON:
        """The ``?with_response=1`` body: an interaction callback response object."""
        interaction: JSON = {"id": record.id, "type": record.type}
        original = self.fake.store.get(record.original_id or "")
        if original is not None and kind in (4, 5):
            interaction["response_message_id"] = original["id"]
            interaction["response_message_loading"] = kind == 5
            interaction["response_message_ephemeral"] = bool(original["flags"] & payloads.EPHEMERAL)
        result: JSON = {"interaction": interaction}
        if resource is not None:
            result["resource"] = {"type": kind, "message": resource}
        return result

    # -- /webhooks/{id}/{token}... --------------------------------------------------------------

    def _target(self, request: web.Request) -> Target | web.Response:
        """The interaction (application id + interaction token) or channel webhook addressed."""
        rec, fake = request[REC], self.fake
        webhook_id, token = request.match_info["webhook_id"], request.match_info["webhook_token"]
        if webhook_id == fake.application_id:
            record = next((i for i in fake.interactions.values() if i.token == token), None)
            if record is None:
                return fake.reject(rec, "invalid_webhook_token", errors.INVALID_WEBHOOK_TOKEN)
            age = fake.now() - record.created_at
            if age > TOKEN_TTL:
                detail = (
                    f"interaction token used {age:.0f}s after creation (limit {TOKEN_TTL:.0f}s)"
                )
                return fake.reject(
                    rec, "token_expired", errors.INVALID_WEBHOOK_TOKEN, detail=detail
                )
            if record.acked_with is None:
                detail = "webhook request before the interaction was acknowledged"
                return fake.reject(rec, "not_acknowledged", errors.UNKNOWN_WEBHOOK, detail=detail)
            return record
        webhook = fake.webhooks.get(webhook_id)
        if webhook is None:
            return errors.UNKNOWN_WEBHOOK.response()
        if webhook["token"] != token:
            return fake.reject(rec, "invalid_webhook_token", errors.INVALID_WEBHOOK_TOKEN)
        return webhook

    def _message(self, target: Target, message_id: str) -> JSON | None:
        if isinstance(target, InteractionRecord):
            if message_id == "@original":
                message_id = target.original_id or ""
            elif message_id not in target.followup_ids:
                return None
            return self.fake.store.get(message_id)
        message = self.fake.store.get(message_id)
        return message if message and message.get("webhook_id") == target["id"] else None

    async def get_webhook(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        if isinstance(target, InteractionRecord):
            return errors.UNKNOWN_WEBHOOK.response()
        return json_response(target)

    async def execute(self, request: web.Request) -> web.StreamResponse:
        rec, fake = request[REC], self.fake
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        body = rec.json or {}
        if (invalid := validate_message(fake, rec, body, creating=True)) is not None:
            return invalid
        if isinstance(target, InteractionRecord):
            message = fake.store.create(
                target.channel_id,
                body,
                rec.files,
                author=fake.bot,
                guild_id=target.guild_id,
                flags_mask=CREATE_FLAGS | payloads.EPHEMERAL,
                webhook_id=fake.application_id,
                application_id=fake.application_id,
            )
            target.followup_ids.append(message["id"])
        else:
            if (denied := channel_guard(fake, target["channel_id"])) is not None:
                return denied
            name = body.get("username") or target["name"]
            author = payloads.user(target["id"], name, bot=True)
            channel_id, guild_id = target["channel_id"], target["guild_id"]
            message = fake.store.create(
                channel_id,
                body,
                rec.files,
                author=author,
                guild_id=guild_id,
                webhook_id=target["id"],
            )
        wait = rec.query.get("wait", "false").lower() in ("1", "true")
        return json_response(message) if wait else no_content()

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        message = self._message(target, request.match_info["message_id"])
        return json_response(message) if message else errors.UNKNOWN_MESSAGE.response()

    async def edit_message(self, request: web.Request) -> web.StreamResponse:
        rec = request[REC]
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        message = self._message(target, request.match_info["message_id"])
        if message is None:
            return errors.UNKNOWN_MESSAGE.response()
        body = rec.json or {}
        if (invalid := validate_message(self.fake, rec, body, creating=False)) is not None:
            return invalid
        return json_response(self.fake.store.edit(message, body, rec.files))

    async def delete_message(self, request: web.Request) -> web.StreamResponse:
        target = self._target(request)
        if isinstance(target, web.Response):
            return target
        message = self._message(target, request.match_info["message_id"])
        if message is None:
            return errors.UNKNOWN_MESSAGE.response()
        self.fake.store.delete(message["id"])
        return no_content()
