"""Calls to services Eddy does not run: model providers, embedding and rerank endpoints,
URLs users give. Each call has a deadline and a retry budget; once spent, it fails with an
`OutsideServiceError`, which is never transient (adapters/transient.py): the message or
attempt that made the call fails visibly instead of being retried without limit, as the
infrastructure Eddy runs itself (Postgres, Redis, the broker) is.

The limits are the process's (`configure` from the settings at start-up), so every client
made anywhere (per workspace model, per request) gets them without threading them through.
"""

from __future__ import annotations

from dataclasses import dataclass


class OutsideServiceError(Exception):
    """An outside service failed within its budget: final for this attempt, whatever
    low-level error (a timeout, a reset connection) it wraps."""


class OutsideServiceTimeout(OutsideServiceError):
    """An outside service gave no (complete) answer within the call's deadline."""


@dataclass(frozen=True)
class OutsideCallLimits:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # each read: for a stream, the wait for its next chunk
    deadline: float = 120.0  # a whole call with its retries (a stream: until its first byte)
    max_retries: int = 2  # connection failures and 408/409/429/5xx answers


_limits = OutsideCallLimits()


def configure(limits: OutsideCallLimits) -> None:
    global _limits
    _limits = limits


def limits() -> OutsideCallLimits:
    return _limits
