"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from lipika.apikeys.models import ApiKey
from lipika.auth.models import AuthSession, EmailToken, Operator, RefreshToken, User
from lipika.billing.models import Hold, LedgerEntry, MemberCap, UsageCounter, Wallet
from lipika.db import Base
from lipika.idempotency.models import IdempotencyRecord
from lipika.inbox.models import WebhookDelivery
from lipika.jobs.models import Job
from lipika.payments.models import Order, Subscription
from lipika.threads.models import Thread
from lipika.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from lipika.workspaces.models import Invitation, Membership, Workspace

__all__ = [
    "ApiKey",
    "AuthSession",
    "Base",
    "EmailToken",
    "Hold",
    "IdempotencyRecord",
    "Invitation",
    "Job",
    "LedgerEntry",
    "MemberCap",
    "Membership",
    "Operator",
    "Order",
    "RefreshToken",
    "Subscription",
    "Thread",
    "UsageCounter",
    "WebhookDelivery",
    "User",
    "Wallet",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "Workspace",
]
