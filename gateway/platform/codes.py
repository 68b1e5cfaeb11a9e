"""Mailed 6-digit codes and the tokens that go with them (forgot password, e-mail code
login), kept where Dify's TokenManager keeps them, in the key-value store, expiring with the
flow's setting; and Dify's limits per e-mail and per client IP.

Neither the token nor the code is stored: the record's key is a hash of the token and the
record holds an HMAC (keyed with SECRET_KEY, bound to the token) of the code. A record is
taken, not read, when a code or token is checked: of two concurrent uses one wins, and a
token is spent by its use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from adapters.kv.base import KeyValueStore
from schemas.errors import (
    EddyError,
    EmailCodeInvalid,
    EmailSendIpLimited,
    InvalidEmail,
    InvalidOrExpiredToken,
)

# A token's phase (Dify's): /forgot-password/validity spends a CODE_SENT token for a RESET
# one, the only kind /forgot-password/resets takes.
CODE_SENT = "code"
RESET = "reset"


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CodeRecord:
    email: str
    code_hmac: str
    expires_at: float  # unix time

    def to_json(self) -> str:
        return orjson.dumps({"email": self.email, "code_hmac": self.code_hmac,
                             "expires_at": self.expires_at}).decode()


class Codes:
    """The codes of one flow ("reset_password", "email_code_login")."""

    def __init__(self, kv: KeyValueStore, secret_key: str, flow: str, ttl_seconds: int) -> None:
        self.kv, self.flow, self.ttl = kv, flow, ttl_seconds
        self._key = hashlib.sha256(f"{flow} codes:{secret_key}".encode()).digest()

    def _record_key(self, phase: str, token: str) -> str:
        return f"account_code:{self.flow}:{phase}:{_digest(token)}"

    def _code_hmac(self, token: str, code: str) -> str:
        return hmac.new(self._key, f"{token}:{code}".encode(), hashlib.sha256).hexdigest()

    async def issue(self, email: str, code: str, phase: str = CODE_SENT) -> str:
        """A new token for this e-mail and code."""
        token = secrets.token_urlsafe(24)
        record = CodeRecord(email=email.lower(), code_hmac=self._code_hmac(token, code),
                            expires_at=time.time() + self.ttl)
        await self.kv.set(self._record_key(phase, token), record.to_json(), ttl=self.ttl)
        return token

    async def _take(self, phase: str, token: str) -> CodeRecord | None:
        raw = await self.kv.take(self._record_key(phase, token))
        return CodeRecord(**orjson.loads(raw)) if raw is not None else None

    async def _put_back(self, phase: str, token: str, record: CodeRecord) -> None:
        remaining = int(record.expires_at - time.time())
        if remaining > 0:
            await self.kv.set(self._record_key(phase, token), record.to_json(), ttl=remaining)

    async def check(self, email: str, code: str, token: str) -> CodeRecord:
        """Spend the token if the e-mail and code are its own (Dify's order of refusals);
        a refused check leaves it usable until it expires."""
        record = await self._take(CODE_SENT, token)
        if record is None:
            raise InvalidOrExpiredToken()
        if email.lower() != record.email:
            await self._put_back(CODE_SENT, token, record)
            raise InvalidEmail()
        if not hmac.compare_digest(record.code_hmac, self._code_hmac(token, code)):
            await self._put_back(CODE_SENT, token, record)
            raise EmailCodeInvalid()
        return record

    async def spend(self, phase: str, token: str) -> CodeRecord:
        record = await self._take(phase, token)
        if record is None:
            raise InvalidOrExpiredToken()
        return record


class Limit:
    """At most `limit` uses per `window` seconds of one key (Dify's RateLimiter of mails per
    e-mail; its count of mails per IP): counted atomically before the use, so concurrent
    requests cannot slip past it."""

    def __init__(self, kv: KeyValueStore, name: str, limit: int, window: int) -> None:
        self.kv, self.name, self.limit, self.window = kv, name, limit, window

    def _key(self, subject: str) -> str:
        return f"{self.name}:{_digest(subject.lower())}"

    async def use(self, subject: str, refusal: EddyError) -> None:
        (count,) = await self.kv.count([self._key(subject)], self.window)
        if count > self.limit:
            raise refusal

    async def clear(self, subject: str) -> None:
        await self.kv.delete(self._key(subject))


async def limit_ip(kv: KeyValueStore, ip: str, per_minute: int) -> None:
    """Dify's cap on the code mails one client IP asks for per minute."""
    await Limit(kv, "email_send_ip_limit", per_minute, 60).use(ip, EmailSendIpLimited())
