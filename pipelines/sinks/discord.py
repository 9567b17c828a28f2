"""The place of ``DiscordSink``, the only Discord-aware module of ``pipelines``.

The real sink arrives with the Discord integration. Until then the class exists with
its intended signature, so ``pipelines.yml`` can name it and validate its kwargs,
but a run that uses it fails at setup with ``DiscordSinkUnavailable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from ..core import Transform
from ..errors import TransformContractError

logger = logging.getLogger(__name__)


class DiscordSinkUnavailable(TransformContractError):
    """DiscordSink is referenced but the Discord integration is not there yet."""

    def __init__(self) -> None:
        super().__init__(
            "DiscordSink is not available yet: it arrives with the Discord integration"
        )


class DiscordSink(Transform):
    """Post items to a Discord channel (via the bot) or a webhook.

    Not available yet: it arrives with the Discord integration. ``setup`` raises
    ``DiscordSinkUnavailable``; nothing is ever sent.
    """

    def __init__(
        self,
        channel_id: int | None = None,
        webhook_url: str | None = None,
        template: str | None = None,
        embed: Mapping[str, Any] | None = None,
        max_ratelimit_timeout: float = 30.0,
    ) -> None:
        self.channel_id = channel_id
        self._webhook_url = webhook_url
        self.template = template
        self.embed = dict(embed) if embed is not None else None
        self.max_ratelimit_timeout = max_ratelimit_timeout

    def __repr__(self) -> str:  # never show the webhook URL: it is a credential
        webhook = "set" if self._webhook_url else None
        return f"DiscordSink(channel_id={self.channel_id!r}, webhook_url={webhook!r})"

    async def setup(self) -> NoReturn:
        raise DiscordSinkUnavailable()

    async def process(self, item: Any) -> NoReturn:
        raise DiscordSinkUnavailable()
