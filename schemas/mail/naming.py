"""Ids and keys of the mail context that the asking contexts and the processor agree on."""

from __future__ import annotations

from uuid import UUID, uuid5

from schemas.base import EDDY_NAMESPACE

MAIL_PARAMS_PURPOSE = "mail params"  # adapters.secrets purpose of MailRequested.sealed_params


def mail_id_for(command_id: UUID, purpose: str) -> UUID:
    """The mail a command asks for, one per purpose: a redelivered command asks for the same
    mail, which exists already."""
    return uuid5(EDDY_NAMESPACE, f"mail:{command_id}:{purpose}")
