"""Authentication: console JWTs (access + rotating refresh), passwords, Service API keys."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from fastapi import Depends, Request
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.kv.base import KeyValueStore
from adapters.secrets import Keyring, SecretUnreadable
from gateway.deps import get_container
from gateway.identities import Identity, console_identities
from projections.platform import queries
from projections.tables import account_credentials
from schemas.errors import (
    AuthenticationFailed,
    Forbidden,
    LoginRateLimited,
    NotSetup,
    Unauthorized,
)
from schemas.platform import roles
from schemas.platform.commands import SealedToken
from schemas.platform.naming import api_token_hash, api_token_hint

_hasher = PasswordHasher()
_ALGORITHM = "HS256"
API_KEY_LAST_USED = "api_key_last_used"  # key id -> unix time of its last use


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


@functools.cache
def _dummy_password_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _check_password(account: dict[str, Any] | None, password: str) -> bool:
    if account is None or account["password_hash"] is None:
        # An unknown e-mail is checked against a dummy hash: it answers as late as a wrong
        # password does, so timing does not tell which e-mails have accounts.
        verify_password(_dummy_password_hash(), password)
        return False
    return verify_password(account["password_hash"], password)


async def store_credentials(engine: AsyncEngine, account_id: UUID, password: str) -> UUID:
    """Hash the password and keep the hash beside the store, under a new id for the command
    to name (never the hash itself: commands and events reach topics and dead letters).
    Each attempt has its own row, so of two racing setups only the accepted one's counts."""
    password_hash = await asyncio.to_thread(hash_password, password)
    credentials_id = uuid4()
    async with engine.begin() as conn:
        await conn.execute(insert(account_credentials).values(
            id=credentials_id, account_id=account_id, password_hash=password_hash,
            created_at=datetime.now(UTC)))
    return credentials_id


async def discard_credentials(engine: AsyncEngine, credentials_id: UUID) -> None:
    """Those of a registration that was refused: nothing names them."""
    async with engine.begin() as conn:
        await conn.execute(delete(account_credentials).where(
            account_credentials.c.id == credentials_id))


def new_api_token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)[:24]}"


# --- API tokens at rest: hashed for lookup, encrypted for the console ------------------------


API_TOKEN_PURPOSE = "api token display"


def seal_api_token(keyring: Keyring, token: str) -> SealedToken:
    """The token as commands, events and the read model carry it: never in plaintext;
    sealed with its workspace's key."""
    return SealedToken(sha256=api_token_hash(token), hint=api_token_hint(token),
                       ciphertext=keyring.seal(API_TOKEN_PURPOSE, token))


def reveal_api_token(keyring: Keyring, ciphertext: str | None, hint: str) -> str:
    """The token for the console (Dify lists keys with their full token). A key created
    before tokens were encrypted, or under another SECRET_KEY, still authenticates; the
    console can only show its hint."""
    if ciphertext:
        try:
            return keyring.unseal(API_TOKEN_PURPOSE, ciphertext)
        except SecretUnreadable:
            pass
    return hint


@dataclass(frozen=True)
class ConsoleUser:
    account_id: UUID
    tenant_id: UUID  # the workspace its console works in
    name: str
    role: str  # its role there (schemas.platform.roles)
    session_id: str | None = None  # the login its access token belongs to (Tokens.issue)


@dataclass(frozen=True)
class ApiKeyPrincipal:
    key_id: UUID
    tenant_id: UUID
    key_type: str
    app_id: UUID | None
    actor_id: UUID  # the workspace owner, on whose behalf Service API calls act


async def end_sessions(kv: KeyValueStore, account_id: UUID, refresh_ttl: timedelta,
                       keep: str | None = None) -> None:
    """End every session of the account but `keep`: their tokens stop working now (a new
    session generation). Remembered as long as a refresh token lives (`refresh_ttl`): any
    token from before is expired by then. Operator commands call it too (`eddy
    reset-password`), outside any request."""
    await kv.set(f"sessions_ended:{account_id}", f"{secrets.token_hex(8)} {keep or '-'}",
                 ttl=int(refresh_ttl.total_seconds()))


_VERIFIED_MAX = 10_000  # past this many tokens, start over (a bound, not an eviction policy)
_verified: dict[tuple[str, str], dict[str, Any]] = {}  # (key, token) -> its claims


def _verified_claims(token: str, key: str) -> dict[str, Any]:
    """The claims of a token signed with `key` and not expired. A token's signature is
    checked once per process (every console request sends it again); its expiry each time."""
    claims = _verified.get((key, token))
    if claims is None:
        try:
            claims = jwt.decode(token, key, algorithms=[_ALGORITHM])
        except jwt.PyJWTError:
            raise Unauthorized("Invalid or expired token.") from None
        if isinstance(claims.get("exp"), int):  # ours always expire; others are not kept
            if len(_verified) >= _VERIFIED_MAX:
                _verified.clear()
            _verified[(key, token)] = claims
    elif claims["exp"] <= time.time():  # as PyJWT decides it (no leeway)
        raise Unauthorized("Invalid or expired token.")
    return claims


class Tokens:
    """A login is a session: an access token and a rotating refresh token, both naming the
    session (`sid`, the refresh token's id) and the account's session generation (`gen`) at
    login. Logging out ends one session; a password change or reset ends the account's
    others (a new generation), at once for access tokens too."""

    def __init__(self, request: Request) -> None:
        self.c = get_container(request)
        self.settings = self.c.settings

    def _encode(self, claims: dict[str, object], ttl: timedelta) -> str:
        now = datetime.now(UTC)
        return jwt.encode({**claims, "iat": now, "exp": now + ttl, "iss": "SELF_HOSTED"},
                          self.settings.SECRET_KEY, algorithm=_ALGORITHM)

    def _refresh_ttl(self) -> timedelta:
        return timedelta(days=self.settings.REFRESH_TOKEN_EXPIRE_DAYS)

    async def issue(self, account_id: UUID) -> dict[str, str]:
        jti = secrets.token_hex(16)
        ttl = self._refresh_ttl()
        generation = await self._generation(account_id)
        await self.c.kv.set(f"refresh_token:{jti}", str(account_id),
                            ttl=int(ttl.total_seconds()))
        session = {"user_id": str(account_id), "gen": generation}
        return {
            "access_token": self._encode(
                {**session, "sub": "Console API Passport", "type": "access", "sid": jti},
                timedelta(minutes=self.settings.ACCESS_TOKEN_EXPIRE_MINUTES)),
            "refresh_token": self._encode({**session, "type": "refresh", "jti": jti}, ttl),
        }

    def decode(self, token: str, expected_type: str) -> dict[str, object]:
        claims = _verified_claims(token, self.settings.SECRET_KEY)
        if claims.get("type") != expected_type:
            raise Unauthorized("Invalid or expired token.")
        return claims

    async def _generation(self, account_id: UUID | str) -> str:
        # "<generation> <the session kept through it>"; none: sessions were never ended, or
        # so long ago that every token from before has expired.
        ended = await self.c.kv.get(f"sessions_ended:{account_id}")
        return ended.split(" ", 1)[0] if ended else ""

    async def ensure_live(self, claims: dict[str, object]) -> None:
        """Refuse a token of a session that was logged out or ended by a password change."""
        sid = str(claims.get("sid") or claims.get("jti") or "")
        # One round trip: both keys are read on every console request.
        ended, logged_out = await self.c.kv.get_many(
            [f"sessions_ended:{claims['user_id']}", f"logged_out:{sid}"])
        if ended:
            generation, _, kept = ended.partition(" ")
            if claims.get("gen") != generation and sid != kept:
                raise Unauthorized("Invalid or expired token.")
        if sid and logged_out is not None:
            raise Unauthorized("Invalid or expired token.")

    async def refresh(self, refresh_token: str) -> dict[str, str]:
        claims = self.decode(refresh_token, "refresh")
        await self.ensure_live(claims)
        # Single use: a stolen, already-used refresh token is worthless.
        owner = await self.c.kv.take(f"refresh_token:{claims['jti']}")
        if owner is None or owner != str(claims["user_id"]):
            raise Unauthorized("Invalid or expired refresh token.")
        return await self.issue(UUID(str(claims["user_id"])))

    async def end_sessions(self, account_id: UUID, keep: str | None = None) -> None:
        await end_sessions(self.c.kv, account_id, self._refresh_ttl(), keep)

    async def log_out(self, session_id: str) -> None:
        await self.c.kv.delete(f"refresh_token:{session_id}")
        await self.c.kv.set(f"logged_out:{session_id}", "1",
                            ttl=self.settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60)


def login_failures_key(email: str) -> str:
    """The kv key counting an account's failed logins (`eddy reset-password` clears it, as
    Dify's does)."""
    return f"login_fail:account:{email.strip().lower()}"


class LoginLimiter:
    """Login attempts per account and per client IP, counted before the password is checked:
    the count is atomic, so of N concurrent guesses only the first `limit` reach the password
    check, the rest are refused. A successful login clears the account's count (as Dify
    does) and gives its attempt back to the IP."""

    def __init__(self, request: Request) -> None:
        self.c = get_container(request)
        ip = request.client.host if request.client else "unknown"
        self._ip_key = f"login_fail:ip:{ip}"

    def _account_key(self, email: str) -> str:
        return login_failures_key(email)

    async def attempt(self, email: str) -> None:
        limit = self.c.settings.LOGIN_LOCKOUT_ATTEMPTS
        # A new counter starts its lockout window; attempts while locked out do not extend it.
        on_account, on_ip = await self.c.kv.count(
            [self._account_key(email), self._ip_key], self.c.settings.LOGIN_LOCKOUT_DURATION)
        # The IP allows more tries than one account: several people may share one address.
        if on_account > limit or on_ip > limit * 4:
            raise LoginRateLimited()

    async def succeeded(self, email: str) -> None:
        await self.c.kv.delete(self._account_key(email))
        await self.c.kv.uncount(self._ip_key)


async def login(request: Request, email: str, password: str) -> dict[str, str]:
    c = get_container(request)
    limiter = LoginLimiter(request)
    await limiter.attempt(email)
    account = await queries.account_by_email(c.engine, email)
    # argon2 takes tens of milliseconds of CPU: off the event loop.
    verified = await asyncio.to_thread(_check_password, account, password)
    if account is None or not verified:
        raise AuthenticationFailed()
    await limiter.succeeded(email)
    return await Tokens(request).issue(account["id"])


def _bearer(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be provided and start with 'Bearer'")
    return token.strip()


async def console_user(request: Request) -> ConsoleUser:
    c = get_container(request)
    tokens = Tokens(request)
    claims = tokens.decode(_bearer(request), "access")
    await tokens.ensure_live(claims)
    account_id = UUID(str(claims["user_id"]))
    identity = await _identity(request, c.engine, account_id)
    sid = claims.get("sid")
    return ConsoleUser(account_id=account_id, tenant_id=identity.tenant_id, name=identity.name,
                       role=identity.role, session_id=str(sid) if sid else None)


async def _identity(request: Request, engine: AsyncEngine, account_id: UUID) -> Identity:
    """From this process's cache, which projection notices evict (a removed member or a
    changed role counts as soon as the read model does); else read."""
    cache = console_identities(request)
    if cache is not None and (cached := cache.get(account_id)) is not None:
        return cached
    read_at = cache.mark() if cache is not None else 0
    found = await queries.console_identity(engine, account_id)
    if found is None:
        raise Unauthorized("Account not found.")
    account, tenant_id, role = found
    identity = Identity(name=account["name"], tenant_id=tenant_id, role=role)
    if cache is not None:
        sources = {account_id, tenant_id}
        if account["current_workspace_id"] is not None:
            sources.add(account["current_workspace_id"])
        cache.keep(account_id, identity, sources, read_at)
    return identity


# The roles each console role dependency serves, by the callable FastAPI sees (for the test
# that every console route takes exactly one, and its permission table).
SERVED_ROLES: dict[Callable[[Request], Awaitable[ConsoleUser]], frozenset[str]] = {
    console_user: roles.EVERYONE}


def _role_in(allowed: frozenset[str]) -> Callable[[Request], Awaitable[ConsoleUser]]:
    async def member_with_role(request: Request) -> ConsoleUser:
        user = await console_user(request)
        if user.role not in allowed:
            raise Forbidden()
        return user
    SERVED_ROLES[member_with_role] = allowed
    return member_with_role


async def _api_key(request: Request, *key_types: str) -> ApiKeyPrincipal:
    c = get_container(request)
    state: Any = request.app.state
    if not getattr(state, "set_up", False):  # asked until seen: a setup is never undone
        if await queries.setup_info(c.engine) is None:
            raise NotSetup()
        state.set_up = True
    key = await queries.api_key_by_token_hash(c.engine, api_token_hash(_bearer(request)))
    if key is None or key["type"] not in key_types:
        raise Unauthorized("Access token is invalid.")
    key_type = key["type"]
    # last_used_at is operational data, not domain state: kept in the key-value store, not
    # as an event.
    await c.kv.set_field(API_KEY_LAST_USED, str(key["id"]), str(int(time.time())))
    return ApiKeyPrincipal(key_id=key["id"], tenant_id=key["tenant_id"], key_type=key_type,
                           app_id=key["app_id"], actor_id=key["owner_id"])


async def app_api_key(request: Request) -> ApiKeyPrincipal:
    return await _api_key(request, "app")


async def dataset_api_key(request: Request) -> ApiKeyPrincipal:
    return await _api_key(request, "dataset")


async def service_api_key(request: Request) -> ApiKeyPrincipal:
    """Either kind of Service API key (for what both APIs share: a command's status)."""
    return await _api_key(request, "app", "dataset")


# A console route names the roles it serves, as Dify's decorators and checks do (every
# console route takes exactly one of these: tests/unit/test_console_roles.py; the permission
# table, every route with the roles it serves, is tests/console_roles.py).
CurrentUser = Depends(console_user)  # any member
AppReader = Depends(_role_in(roles.APP_READERS))
Editor = Depends(_role_in(roles.EDITORS))
DatasetEditor = Depends(_role_in(roles.DATASET_EDITORS))
AdminOrOwner = Depends(_role_in(roles.ADMINS))
Owner = Depends(_role_in(roles.OWNERS))
AppKey = Depends(app_api_key)
DatasetKey = Depends(dataset_api_key)
ServiceKey = Depends(service_api_key)
