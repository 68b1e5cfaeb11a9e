"""Authentication: console JWTs (access + rotating refresh), passwords, Service API keys."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from fastapi import Depends, Request

from gateway.deps import get_container
from projections.platform import queries
from schemas.errors import (
    InvalidCredentials,
    LoginRateLimited,
    NotSetup,
    Unauthorized,
)

_hasher = PasswordHasher()
_ALGORITHM = "HS256"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return False


def new_api_token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(18)[:24]}"


@dataclass(frozen=True)
class ConsoleUser:
    account_id: UUID
    tenant_id: UUID
    name: str


@dataclass(frozen=True)
class ApiKeyPrincipal:
    key_id: UUID
    tenant_id: UUID
    key_type: str
    app_id: UUID | None
    actor_id: UUID  # the workspace owner, on whose behalf Service API calls act


class Tokens:
    def __init__(self, request: Request) -> None:
        self.c = get_container(request)
        self.settings = self.c.settings

    def _encode(self, claims: dict[str, object], ttl: timedelta) -> str:
        now = datetime.now(UTC)
        return jwt.encode({**claims, "iat": now, "exp": now + ttl, "iss": "SELF_HOSTED"},
                          self.settings.SECRET_KEY, algorithm=_ALGORITHM)

    async def issue(self, account_id: UUID) -> dict[str, str]:
        jti = secrets.token_hex(16)
        ttl = timedelta(days=self.settings.REFRESH_TOKEN_EXPIRE_DAYS)
        await self.c.redis.set(self.c.redis_key(f"refresh_token:{jti}"), str(account_id),
                               ex=int(ttl.total_seconds()))
        return {
            "access_token": self._encode(
                {"user_id": str(account_id), "sub": "Console API Passport", "type": "access"},
                timedelta(minutes=self.settings.ACCESS_TOKEN_EXPIRE_MINUTES)),
            "refresh_token": self._encode(
                {"user_id": str(account_id), "type": "refresh", "jti": jti}, ttl),
        }

    def decode(self, token: str, expected_type: str) -> dict[str, object]:
        try:
            claims = jwt.decode(token, self.settings.SECRET_KEY, algorithms=[_ALGORITHM])
        except jwt.PyJWTError:
            raise Unauthorized("Invalid or expired token.") from None
        if claims.get("type") != expected_type:
            raise Unauthorized("Invalid or expired token.")
        return claims

    async def refresh(self, refresh_token: str) -> dict[str, str]:
        claims = self.decode(refresh_token, "refresh")
        # Single use: a stolen, already-used refresh token is worthless.
        owner = await self.c.redis.getdel(self.c.redis_key(f"refresh_token:{claims['jti']}"))
        if owner is None or owner != str(claims["user_id"]).encode():
            raise Unauthorized("Invalid or expired refresh token.")
        return await self.issue(UUID(str(claims["user_id"])))


class LoginLimiter:
    """Failed logins counted per account and per client IP; past the limit, locked out."""

    def __init__(self, request: Request) -> None:
        self.c = get_container(request)
        ip = request.client.host if request.client else "unknown"
        self._ip_key = self.c.redis_key(f"login_fail:ip:{ip}")

    def _keys(self, email: str) -> tuple[str, str]:
        return self.c.redis_key(f"login_fail:account:{email.strip().lower()}"), self._ip_key

    async def check(self, email: str) -> None:
        limit = self.c.settings.LOGIN_LOCKOUT_ATTEMPTS
        counts = await self.c.redis.mget(self._keys(email))
        # The IP allows more tries than one account: several people may share one address.
        if int(counts[0] or 0) >= limit or int(counts[1] or 0) >= limit * 4:
            raise LoginRateLimited()

    async def failed(self, email: str) -> None:
        ttl = self.c.settings.LOGIN_LOCKOUT_DURATION
        async with self.c.redis.pipeline(transaction=True) as pipe:
            for key in self._keys(email):
                pipe.incr(key)
                pipe.expire(key, ttl)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self.c.redis.delete(self._keys(email)[0])


async def login(request: Request, email: str, password: str) -> dict[str, str]:
    c = get_container(request)
    limiter = LoginLimiter(request)
    await limiter.check(email)
    account = await queries.account_by_email(c.engine, email)
    if account is None or not verify_password(account["password_hash"], password):
        await limiter.failed(email)
        raise InvalidCredentials()
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
    claims = Tokens(request).decode(_bearer(request), "access")
    account_id = UUID(str(claims["user_id"]))
    identity = await queries.console_identity(c.engine, account_id)
    if identity is None:
        raise Unauthorized("Account not found.")
    account, tenant_id = identity
    return ConsoleUser(account_id=account_id, tenant_id=tenant_id, name=account["name"])


async def _api_key(request: Request, key_type: str) -> ApiKeyPrincipal:
    c = get_container(request)
    if await queries.setup_info(c.engine) is None:
        raise NotSetup()
    token = _bearer(request)
    key = await queries.api_key_by_token(c.engine, token)
    if key is None or key["type"] != key_type:
        raise Unauthorized("Access token is invalid.")
    # last_used_at is operational data, not domain state: kept in Redis, not as an event.
    await c.redis.hset(c.redis_key("api_key_last_used"), str(key["id"]), int(time.time()))
    return ApiKeyPrincipal(key_id=key["id"], tenant_id=key["tenant_id"], key_type=key_type,
                           app_id=key["app_id"], actor_id=key["owner_id"])


async def app_api_key(request: Request) -> ApiKeyPrincipal:
    return await _api_key(request, "app")


async def dataset_api_key(request: Request) -> ApiKeyPrincipal:
    return await _api_key(request, "dataset")


CurrentUser = Depends(console_user)
AppKey = Depends(app_api_key)
DatasetKey = Depends(dataset_api_key)
