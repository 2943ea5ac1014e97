"""Register, login, logout, ``/me``, and the helpers every route uses to find the caller.

A client authenticates with ``Authorization: Bearer <token>`` (checked first) or the
``livecast_session`` cookie set by login (HttpOnly, SameSite=Lax; unsafe requests with the
cookie pass the CSRF check of ``livecast.api.csrf``).

Limits, all keyed by the client address of ``client_ip()`` (never by username alone, so
nobody can lock a user out from elsewhere): failed logins per address and per (address,
username), login requests per address, and registrations per address. Each refusal is a
429 with Retry-After. Hashing itself is bounded by ``livecast.passwords``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from livecast.api import openapi
from livecast.api.middleware import read_json
from livecast.cluster import client_ip
from livecast.core.errors import Forbidden, RateLimited, Unauthorized, ValidationError
from livecast.keys import SETTINGS, USERS
from livecast.passwords import Busy
from livecast.core.ratelimit import Limiter, LimiterFactory, local_limiter
from livecast.users import USERNAME_RE, User

log = logging.getLogger(__name__)

COOKIE_NAME = "livecast_session"
NO_STORE = {"Cache-Control": "no-store"}

routes = web.RouteTableDef()


@dataclass
class AuthLimits:
    failures_per_client: Limiter  # failed logins per address
    failures_per_client_user: Limiter  # failed logins per (address, username)
    logins_per_client: Limiter  # every login request per address
    registrations_per_client: Limiter

    async def login_wait(self, client: str, client_user: str | None) -> float:
        return max(await self.failures_per_client.retry_after(client),
                   await self.logins_per_client.retry_after(client),
                   await self.failures_per_client_user.retry_after(client_user) if client_user else 0.0)

    async def login_hit(self, client: str, client_user: str | None) -> None:
        await self.failures_per_client.hit(client)
        await self.logins_per_client.hit(client)
        if client_user:
            await self.failures_per_client_user.hit(client_user)

    async def forgive_failure(self, client: str, client_user: str | None) -> None:
        await self.failures_per_client.refund(client)
        if client_user:
            await self.failures_per_client_user.refund(client_user)


AUTH_LIMITS: web.AppKey[AuthLimits] = web.AppKey("auth_limits")
_CALLER: web.RequestKey[tuple[User | None, str | None]] = web.RequestKey("livecast_caller")


def setup_limits(app: web.Application, make: LimiterFactory = local_limiter) -> None:
    """The login and registration limits, from ``make`` (this process's, or the cluster's
    shared through Redis)."""
    auth = app[SETTINGS].auth
    window = auth.login_window_seconds
    app[AUTH_LIMITS] = AuthLimits(
        failures_per_client=make("login-failures", max(1, auth.login_attempts_per_client), window),
        failures_per_client_user=make("login-failures-user", max(1, auth.login_attempts_per_user), window),
        logins_per_client=make("logins", max(1, auth.login_requests_per_client), window),
        registrations_per_client=make("registrations", max(1, auth.register_per_address),
                                      auth.register_window_seconds),
    )


# -- helpers for every route -------------------------------------------------------


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object body (see ``read_json`` for the errors)."""
    return dict(await read_json(request))


def request_token(request: web.Request) -> str | None:
    """The session token the request carries: Bearer header first, then the cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    return request.cookies.get(COOKIE_NAME) or None


async def current_user(request: web.Request) -> User | None:
    """The logged-in user, or None. Looked up once per request, then cached on it."""
    if _CALLER in request:
        return request[_CALLER][0]
    token = request_token(request)
    user = await request.app[USERS].user_for_token(token) if token else None
    request[_CALLER] = (user, token if user else None)
    return user


async def require_user(request: web.Request, *roles: str) -> User:
    """The logged-in user; 401 when anonymous, 403 when ``roles`` are given and theirs isn't one."""
    user = await current_user(request)
    if user is None:
        raise Unauthorized("log in first")
    if roles and user.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}")
    return user


def _client_key(request: web.Request) -> str:
    """The viewer's address (also behind an edge or a trusted proxy); an IPv6 address
    counts as its /64, since one subscriber usually holds a whole /64 to rotate through."""
    address = client_ip(request) or "unknown"
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _required(data: dict[str, Any], field: str) -> Any:
    if field not in data or data[field] is None:
        raise ValidationError(f"{field} is required", field=field, code="missing")
    return data[field]


# -- routes ----------------------------------------------------------------------------


@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    data = await read_body(request)
    users = request.app[USERS]
    username, password = _required(data, "username"), _required(data, "password")
    users.validate_new(username, password, email=data.get("email"))  # a 400 costs no attempt
    limiter, client = request.app[AUTH_LIMITS].registrations_per_client, _client_key(request)
    wait = await limiter.hit(client)
    if wait > 0:
        log.warning("registration rate limit hit from %s", client)
        raise RateLimited("too many registrations from this address, try again later", retry_after=wait)
    try:
        user = await users.create_user(username, password, email=data.get("email"))
    except Busy:
        await limiter.refund(client)  # nothing was done; the client may simply retry
        raise
    return web.json_response({"user": user.to_private_json()}, status=201)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    data = await read_body(request)
    username, password = _required(data, "username"), _required(data, "password")
    if not isinstance(username, str):
        raise ValidationError("username must be a string", field="username")
    if not isinstance(password, str):
        raise ValidationError("password must be a string", field="password")
    limits = request.app[AUTH_LIMITS]
    client = _client_key(request)
    user_key = username.lower() if USERNAME_RE.fullmatch(username) else None
    client_user = f"{client} {user_key}" if user_key else None  # never the name alone
    wait = await limits.login_wait(client, client_user)
    if wait > 0:
        log.warning("login rate limit hit from %s", client)
        raise RateLimited("too many login attempts, try again later", retry_after=wait)
    await limits.login_hit(client, client_user)
    users = request.app[USERS]
    try:
        user = await users.authenticate(username, password)
    except Unauthorized:
        log.info("failed login for %s from %s", user_key or "<invalid name>", client)
        raise
    except Busy:
        await limits.forgive_failure(client, client_user)
        await limits.logins_per_client.refund(client)
        raise
    await limits.forgive_failure(client, client_user)
    session = await users.create_session(user)
    settings = request.app[SETTINGS].auth
    response = web.json_response(
        {"token": session.token, "user": user.to_private_json(), "expires_at": _iso(session.expires_at)},
        headers=NO_STORE,
    )
    response.set_cookie(
        COOKIE_NAME, session.token, max_age=max(1, int(users.session_ttl)), path="/",
        httponly=True, samesite="Lax", secure=settings.cookie_secure or None,
    )
    log.info("user %s logged in from %s", user.username, client)
    return response


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    await require_user(request)
    _, token = request[_CALLER]
    await request.app[USERS].revoke(token)
    response = web.Response(status=204)
    response.del_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Lax",
                        secure=request.app[SETTINGS].auth.cookie_secure or None)
    return response


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    user = await require_user(request)
    return web.json_response({"user": user.to_private_json()}, headers=NO_STORE)


CSRF_403 = "csrf_rejected: a cookie-authenticated request without a same-origin Origin or a JSON body"
BUSY_503 = "busy: password hashing is saturated; retry after Retry-After seconds"
openapi.document("POST", "/api/v1/auth/register", "Create an account", tags=["auth"],
                 body="Register", responses={201: "UserEnvelope", 403: CSRF_403, 409: "username taken",
                                             429: "too many registrations from this address (Retry-After)",
                                             503: BUSY_503},
                 description="The new account gets the server's default role and `auth.signup_coins`."
                             " At most `auth.register_per_address` per `auth.register_window_seconds`.")
openapi.document("POST", "/api/v1/auth/login", "Log in; returns a token and sets the session cookie",
                 tags=["auth"], body="Login",
                 responses={200: "Session", 401: "bad credentials", 403: f"account disabled, or {CSRF_403}",
                            429: "too many attempts from this address (Retry-After)", 503: BUSY_503})
openapi.document("POST", "/api/v1/auth/logout", "Revoke the current token and clear the cookie",
                 tags=["auth"], auth="user", responses={204: None, 403: CSRF_403})
openapi.document("GET", "/api/v1/me", "The logged-in user", tags=["auth"], auth="user",
                 responses={200: "UserEnvelope"})
