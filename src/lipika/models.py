"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from lipika.apikeys.models import ApiKey
from lipika.auth.models import AuthSession, EmailToken, Operator, RefreshToken, User
from lipika.billing.models import Hold, LedgerEntry, MemberCap, UsageCounter, Wallet
from lipika.db import Base
from lipika.jobs.models import Job
from lipika.threads.models import Thread
from lipika.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from lipika.workspaces.models import Invitation, Membership, Workspace

__all__ = [
    "ApiKey",
    "AuthSession",
    "Base",
    "EmailToken",
    "Hold",
    "Invitation",
    "Job",
    "LedgerEntry",
    "MemberCap",
    "Membership",
    "Operator",
    "RefreshToken",
    "Thread",
    "UsageCounter",
    "User",
    "Wallet",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "Workspace",
]
