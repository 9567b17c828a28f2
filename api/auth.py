"""Bearer-token authentication, and the read-only loopback mode when no token is set.

- Health (``/healthz``, ``/readyz``, ``/api/scheduler/health`` and its alias) and
  ``/metrics`` are open to everyone.
- With tokens configured, every other request needs ``Authorization: Bearer <token>``:
  missing -> 401 with ``WWW-Authenticate: Bearer``, not one of ours -> 403. Tokens are
  compared in constant time (digests, so their lengths do not leak either); the
  matching client's name is the actor changes are audited under.
- Browsers cannot send a bearer token, so reads (GET, HEAD) also take HTTP Basic with
  the token as the password (any user name); the status page and its charts ask for it
  (``WWW-Authenticate: Basic``), so a phone's browser prompts once. Changes never take
  Basic: a browser would replay it on a cross-site form post.
- With no token configured, reads (GET, HEAD, OPTIONS) are served to loopback peers
  (127.0.0.0/8, ::1) only; changes are refused with 403 saying how to enable them.

The peer is the TCP peer: a reverse proxy on the same host makes every client look
local, so set a token before putting one in front. Tokens are never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from contextvars import ContextVar

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from pipelines.secret import Secret

from .problems import ApiProblem
from .settings import ApiSettings

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/api/scheduler/health", "/api/schedules/health", "/metrics"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_actor: ContextVar[str | None] = ContextVar("pipebot_api_actor", default=None)
"""The authenticated client's name while its request is handled (None: read-only mode)."""
CHALLENGE = 'Bearer realm="pipebot"'
BROWSER_CHALLENGE = 'Basic realm="pipebot", charset="UTF-8"'
BROWSER_PATHS = ("/", "/charts/")
"""The status page and its charts: a 401 there asks the browser for Basic credentials."""
BASIC_METHODS = frozenset({"GET", "HEAD"})
HOW_TO_ENABLE = (
    "set API_TOKEN (or API_TOKENS=name:token,...) and send 'Authorization: Bearer <token>'"
)


def current_actor() -> str:
    """The authenticated client's name; handlers that change things are behind a token."""
    actor = _actor.get()
    if actor is None:
        raise ApiProblem(
            403, "read-only", "Read-only API", f"changes need a token: {HOW_TO_ENABLE}"
        )
    return actor


def is_loopback(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def bearer(header: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, or None."""
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return None
    return credentials


def basic_password(header: str | None) -> str | None:
    """The password of an ``Authorization: Basic`` header (the token), or None."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep and password else None


def is_browser_path(path: str) -> bool:
    return path == BROWSER_PATHS[0] or path.startswith(BROWSER_PATHS[1])


class Authenticator:
    """Decides who a request is, or refuses it."""

    def __init__(self, settings: ApiSettings) -> None:
        self._clients = tuple((t.name, t.secret.digest()) for t in settings.tokens)

    @property
    def read_only(self) -> bool:
        return not self._clients

    def identify(self, credentials: str) -> str | None:
        """The name of the client whose token this is; every token is compared."""
        digest = Secret(credentials).digest()
        found: str | None = None
        for name, expected in self._clients:
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def check(self, request: web.Request) -> str | None:
        """The actor (None in read-only mode); raises ``ApiProblem`` to refuse."""
        if self.read_only:
            self._check_read_only(request)
            return None
        header = request.headers.get(hdrs.AUTHORIZATION)
        credentials = bearer(header)
        basic = credentials is None and request.method in BASIC_METHODS
        if basic:
            credentials = basic_password(header)
        if credentials is None:
            raise self._challenge(request)
        name = self.identify(credentials)
        if name is None:
            logger.warning("refused a request with an unknown token from %s", request.remote)
            if basic and is_browser_path(request.path):
                raise self._challenge(request)  # let the browser ask again
            raise ApiProblem(403, "forbidden", "Token not accepted", "the token is not valid")
        return name

    @staticmethod
    def _challenge(request: web.Request) -> ApiProblem:
        browser = is_browser_path(request.path) and request.method in BASIC_METHODS
        return ApiProblem(
            401,
            "unauthorized",
            "Authentication required",
            "send 'Authorization: Bearer <token>'"
            + (" (or, from a browser, the token as the Basic password)" if browser else ""),
            headers={hdrs.WWW_AUTHENTICATE: BROWSER_CHALLENGE if browser else CHALLENGE},
        )

    @staticmethod
    def _check_read_only(request: web.Request) -> None:
        if not is_loopback(request.remote):
            raise ApiProblem(
                403,
                "loopback-only",
                "Loopback only",
                f"without a token the API answers local clients only: {HOW_TO_ENABLE}",
            )
        if request.method not in SAFE_METHODS:
            raise ApiProblem(
                403,
                "read-only",
                "Read-only API",
                f"the API is read-only because no token is configured; to allow changes, "
                f"{HOW_TO_ENABLE}",
            )


def auth_middleware(settings: ApiSettings) -> Middleware:
    """The middleware enforcing the rules above (inside ``problem_middleware``)."""
    authenticator = Authenticator(settings)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        reset = _actor.set(authenticator.check(request))
        try:
            return await handler(request)
        finally:
            _actor.reset(reset)

    return middleware
