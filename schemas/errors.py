"""Typed errors, each with Dify's error code and HTTP status; the gateway maps them once."""

from __future__ import annotations

from typing import ClassVar


class EddyError(Exception):
    code: ClassVar[str] = "internal_server_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal Server Error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "status": self.status}


class BadRequest(EddyError):
    code, status, default_message = "invalid_param", 400, "Invalid parameters."


class NulCharacter(BadRequest):
    """Text carrying a NUL (U+0000): no field means one, and Postgres text and jsonb cannot
    hold it, so it is refused before anything is recorded."""

    default_message = "Text must not contain the NUL character (\\u0000)."


class RemoteFileRefused(BadRequest):
    """A message's remote_url file may not be fetched (not a public address, unreachable)
    or is not what it claims (type, size)."""

    default_message = "The remote file is not allowed."


class InvalidTimeRange(EddyError):
    """A statistics range's `start`/`end` is no `YYYY-MM-DD HH:MM`, or `start` is after `end`
    (Dify aborts with a plain 400)."""

    code, status, default_message = "bad_request", 400, "Invalid time range."


class Unauthorized(EddyError):
    code, status, default_message = (
        "unauthorized", 401,
        "Access token is invalid. Authorization header must be 'Bearer <api-key>'.",
    )


class Forbidden(EddyError):
    # Dify raises werkzeug's Forbidden: its description is the message.
    code, status, default_message = (
        "forbidden", 403, "You don't have the permission to access the requested resource. "
        "It is either read-protected or not readable by the server.")


class AlreadySetup(EddyError):
    code, status, default_message = "already_setup", 403, "Dify has been successfully installed."


class NotSetup(EddyError):
    code, status, default_message = "not_setup", 401, "Dify has not been set up yet."


class EmailInUse(BadRequest):
    code, default_message = "email_in_use", "The email is already in use."


class SecretChanged(EddyError):
    """A re-seal (`eddy reset-encrypt-key-pair`) named a ciphertext that is no longer the
    stored one: the secret was saved again meanwhile; the rotation reads it again."""

    code, status, default_message = "secret_changed", 409, "The secret changed meanwhile."


class NotFound(EddyError):
    code, status, default_message = "not_found", 404, "Resource not found."


class AppNotFound(NotFound):
    code, default_message = "app_not_found", "App not found."


class ConversationVariableNotFound(NotFound):
    default_message = "Conversation Variable Not Exists."


class WorkflowNotFound(NotFound):
    default_message = "Workflow not found."


class WorkflowRunNotFound(NotFound):
    default_message = "Workflow run not found."


class WebhookNotFound(NotFound):
    """An unknown webhook URL, or one whose signature is not this deployment's (Dify's 404:
    a webhook's id is its secret)."""

    default_message = "Webhook not found."


class WebhookTriggerNotFound(NotFound):
    default_message = "Webhook trigger not found for this node"


class WebhookRequestInvalid(BadRequest):
    """A webhook call that does not fit its trigger node: no run is started."""

    default_message = "Bad Request"


class WorkflowTriggerInvalid(BadRequest):
    """A trigger node of a workflow being published has settings that name no schedule or
    webhook (Dify's ScheduleConfigError)."""


class WebhookRequestTooLarge(EddyError):
    code, status, default_message = ("request_entity_too_large", 413,
                                      "Webhook request too large.")


class WorkflowNodeNotFound(NotFound):
    default_message = "Node not found in the workflow."


class ApiKeyNotFound(NotFound):
    code, default_message = "api_key_not_found", "API key not found."


class DatasetNotFound(NotFound):
    code, default_message = "not_found", "Dataset not found."


class DocumentNotFound(NotFound):
    code, default_message = "not_found", "Document not found."


class SegmentNotFound(NotFound):
    code, default_message = "not_found", "Segment not found."


class ChildChunkNotFound(NotFound):
    code, default_message = "not_found", "Child chunk not found."


class TagNotFound(NotFound):
    code, default_message = "not_found", "Tag not found"


class MetadataNotFound(NotFound):
    code, default_message = "not_found", "Metadata not found."


class TagNameDuplicate(BadRequest):
    # Dify answers a duplicate tag name with 400 invalid_param (not 409).
    default_message = "Tag name already exists"


class InvalidMetadata(EddyError):
    code, status, default_message = "invalid_metadata", 400, "Invalid metadata value."


class PipelineNotSupported(BadRequest):
    # What Dify answers for a knowledge base without a pipeline (all of Eddy's).
    default_message = ("Pipeline not found: knowledge pipelines are not supported here; "
                       "add documents with create-by-text or create-by-file.")


class DocumentNotPausable(EddyError):
    code, status, default_message = (
        "document_indexing_error", 400, "Document is not being indexed, so it cannot be paused.",
    )


class UploadFileNotFound(NotFound):
    code, default_message = "file_not_found", "The requested file was not found."


class FilenameMissing(EddyError):
    code, status, default_message = (
        "filename_not_exists_error", 400, "The specified filename does not exist.")


class ConversationNotFound(NotFound):
    code, default_message = "not_found", "Conversation Not Exists."


class MessageNotFound(NotFound):
    code, default_message = "not_found", "Message Not Exists."


class AnnotationNotFound(NotFound):
    code, default_message = "not_found", "Annotation not found"


class AnnotationJobNotFound(BadRequest):
    default_message = "The job does not exist."


class EndUserNotFound(NotFound):
    code, default_message = "end_user_not_found", "End user not found."


class NotChatApp(EddyError):
    code, status, default_message = (
        "not_chat_app", 400, "Please check if your app mode matches the right API route.")


class NotWorkflowApp(EddyError):
    code, status, default_message = (
        "not_workflow_app", 400, "Please check if your app mode matches the right API route.")


class NotCompletionApp(EddyError):
    code, status, default_message = (
        "not_completion_app", 400, "Please check if your Completion app mode matches the right "
        "API route.")


class DraftWorkflowNotRunnable(EddyError):
    """A Service API run naming a draft's snapshot instead of a published version."""

    code, status = "bad_request", 400


class AppUnavailable(EddyError):
    code, status, default_message = (
        "app_unavailable", 400, "App unavailable, please check your app configurations.")


class WorkflowNotPublished(AppUnavailable):
    """What Dify's Service API answers to a run of an app that published no workflow."""


class SuggestedQuestionsDisabled(EddyError):
    code, status, default_message = "bad_request", 400, "Suggested Questions Is Disabled."


class SpeechToTextDisabled(EddyError):
    code, status, default_message = "speech_to_text_disabled", 400, "Speech to text is disabled."


class NoAudioUploaded(EddyError):
    code, status, default_message = "no_audio_uploaded", 400, "Please upload your audio."


class AudioTooLarge(EddyError):
    code, status, default_message = "audio_too_large", 413, "Audio size exceeded."


class UnsupportedAudioType(EddyError):
    code, status, default_message = "unsupported_audio_type", 415, "Audio type not allowed."


class CompletionRequestError(EddyError):
    code, status, default_message = "completion_request_error", 400, "Completion request failed."


class UnsupportedFileType(EddyError):
    code, status, default_message = "unsupported_file_type", 415, "File type not allowed."


class FileTooLarge(EddyError):
    code, status, default_message = "file_too_large", 413, "File size exceeded."


class NoFileUploaded(EddyError):
    code, status, default_message = "no_file_uploaded", 400, "Please upload your file."


class TooManyFiles(EddyError):
    code, status, default_message = "too_many_files", 400, "Only one file is allowed."


class Conflict(EddyError):
    code, status, default_message = "conflict", 409, "Conflict."


class DraftWorkflowNotSync(Conflict):
    """The draft changed since the editor loaded it (its `hash` is not the draft's)."""

    code, default_message = ("draft_workflow_not_sync", "Workflow graph might have been "
                             "modified, please refresh and resubmit.")


class DatasetNameDuplicate(Conflict):
    code, default_message = "dataset_name_duplicate", "The dataset name already exists."


class AccountAlreadyExists(Conflict):
    code, default_message = "account_already_exists", "Account already exists."


class HumanInputFormNotFound(NotFound):
    default_message = "Form not found"


class HumanInputFormSubmitted(EddyError):
    """Forms are one-shot: the first response (or the timeout) wins."""

    code, status, default_message = (
        "human_input_form_submitted", 412, "This form has already been submitted.")


class HumanInputFormExpired(EddyError):
    code, status, default_message = "human_input_form_expired", 412, "This form has expired."


class InvalidFormData(EddyError):
    code, status, default_message = (
        "invalid_form_data", 400, "The submission does not match the form.")


class IdempotencyKeyReused(EddyError):
    code, status, default_message = (
        "idempotency_key_reused", 422,
        "This Idempotency-Key was used with a different request.",
    )


class AuthenticationFailed(EddyError):
    # Dify's AuthenticationFailedError: one answer for an unknown e-mail and a wrong password.
    code, status, default_message = "authentication_failed", 401, "Invalid email or password."


class LoginRateLimited(EddyError):
    code, status, default_message = (
        "email_code_login_limit", 429,
        "Too many incorrect password attempts. Please try again later.",
    )


class AccountNotFound(EddyError):
    # Dify's AccountNotFound: an e-mail with no account, where registering is off (as on a
    # self-hosted Dify by default).
    code, status, default_message = "account_not_found", 400, "Account not found."


class EmailSendIpLimited(EddyError):
    code, status, default_message = (
        "email_send_ip_limit", 429,
        "Too many emails have been sent from this IP address recently. Please try again later.",
    )


class PasswordResetRateLimited(EddyError):
    code, status = "password_reset_rate_limit_exceeded", 429
    default_message = ("Too many password reset emails have been sent. "
                       "Please try again in 1 minutes.")


class EmailCodeLoginRateLimited(EddyError):
    code, status = "email_code_login_rate_limit_exceeded", 429
    default_message = "Too many login emails have been sent. Please try again in 5 minutes."


class PasswordResetLimited(EddyError):
    # Too many wrong reset codes for one e-mail.
    code, status, default_message = (
        "email_password_reset_limit", 429,
        "Too many failed password reset attempts. Please try again in 24 hours.",
    )


class InvalidOrExpiredToken(EddyError):
    code, status, default_message = (
        "invalid_or_expired_token", 400, "The token is invalid or has expired.")


class InvalidEmail(EddyError):
    code, status, default_message = "invalid_email", 400, "The email address is not valid."


class EmailCodeInvalid(EddyError):
    code, status, default_message = "email_code_error", 400, "Email code is invalid or expired."


class PasswordMismatch(EddyError):
    code, status, default_message = "password_mismatch", 400, "The passwords do not match."


class RepeatPasswordMismatch(EddyError):
    code, status, default_message = (
        "repeat_password_not_match", 400, "New password and repeat password does not match.")


class CurrentPasswordIncorrect(EddyError):
    code, status, default_message = (
        "current_password_incorrect", 400, "Current password is incorrect.")


# --- workspaces and members (Dify's codes and messages) ------------------------------------


class InvalidRole(EddyError):
    code, status, default_message = "invalid-role", 400, "Invalid role"


class CannotOperateSelf(EddyError):
    code, status, default_message = "cannot-operate-self", 400, "Cannot operate self."


class MemberNotInTenant(NotFound):
    code, default_message = "member-not-found", "Member not in tenant."


class RoleAlreadyAssigned(BadRequest):
    default_message = "The provided role is already assigned to the member."


class AccountAlreadyInTenant(EddyError):
    # Dify answers it inside an invitation's results (a success that links to sign-in).
    code, status, default_message = (
        "account_already_in_tenant", 400, "Account already in tenant.")


class AccountNotLinkTenant(EddyError):
    code, status, default_message = "account_not_link_tenant", 403, "Account not link tenant."


class NotOwner(EddyError):
    code, status, default_message = "not_owner", 400, "You are not the owner of the workspace."


class CannotTransferOwnerToSelf(EddyError):
    code, status, default_message = (
        "cannot_transfer_owner_to_self", 400, "You cannot transfer ownership to yourself.")


class NotInWorkspace(EddyError):
    # What an ownership transfer to a non-member answers (Dify's console auth
    # MemberNotInTenantError, unlike the members routes' 404).
    code, status, default_message = (
        "member_not_in_tenant", 400, "The member is not in the workspace.")


class OwnerTransferRateLimited(EddyError):
    code, status, default_message = (
        "owner_transfer_rate_limit_exceeded", 429,
        "Too many owner transfer emails have been sent. Please try again in 1 minutes.")


class OwnerTransferLimited(EddyError):
    # Too many wrong owner transfer codes for one e-mail.
    code, status, default_message = (
        "owner_transfer_limit", 429,
        "Too many failed owner transfer attempts. Please try again in 24 hours.")


class AlreadyActivated(EddyError):
    code, status, default_message = (
        "already_activate", 403,
        "Auth Token is invalid or account already activated, please check again.")


class ProviderNotInitialized(EddyError):
    # Dify's ProviderNotInitializeError: the workspace has no model of the type asked for.
    code, status, default_message = (
        "provider_not_initialize", 400,
        "No valid model provider credentials found. Please go to Settings -> Model Provider "
        "to complete your provider credentials.",
    )


class ServiceUnavailable(EddyError):
    code, status, default_message = "service_unavailable", 503, "Service unavailable."


class ServerBusy(ServiceUnavailable):
    """At capacity: nothing was recorded, and the client may retry (Retry-After)."""


def _all_subclasses(cls: type[EddyError]) -> list[type[EddyError]]:
    out: list[type[EddyError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def error_from_dict(data: dict[str, object]) -> EddyError:
    """Rebuild a typed error from a stored command rejection."""
    candidates: list[type[EddyError]] = [EddyError, *_all_subclasses(EddyError)]
    for cls in candidates:
        if cls.code == data.get("code"):
            return cls(str(data.get("message") or cls.default_message))
    return BadRequest(str(data.get("message")))
