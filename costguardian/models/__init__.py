"""Every model, importable from one place; ALL_MODELS is what migrations must produce."""
from costguardian.models.audit import AuditLog
from costguardian.models.base import BaseModel
from costguardian.models.chat import ChatMessage, Conversation
from costguardian.models.provider_sync import (KnownProviderKey, ProviderCostBucket, ProviderKey, ProviderKeyMatch,
                                               ProviderSyncConnection, ProviderUsageBucket)
from costguardian.models.billing import BillingAccount, Invoice, MeterReport, Plan, StripeEvent
from costguardian.models.domains import DomainVerification
from costguardian.models.exports import OrgExport
from costguardian.models.budgets import Budget, BudgetAlert, BudgetIncrease, BudgetSpend
from costguardian.models.gateway import GatewayReservation, ProviderCredential
from costguardian.models.gateway_requests import GatewayRequest, GatewayRequestBody
from costguardian.models.keys import ApiKey
from costguardian.models.mail import OutboxMessage
from costguardian.models.notifications import (Delivery, DeliveryAttempt, Notification, NotificationOnce,
                                               NotificationPreference, NotificationSettings, TemplateOverride, WebhookEndpoint)
from costguardian.models.org import Department, Membership, Organization, TenantModel
from costguardian.models.settings_version import OrgSettingsVersion
from costguardian.models.onboarding import OnboardingProgress
from costguardian.models.platform import (ErrorCount, GlobalPriceOverride, Impersonation, PlatformSetting,
                                          PlatformToken, TaskRun, UserSession)
from costguardian.models.usage import (NO_DEPARTMENT, NO_KEY, NO_USER, ModelAlias, PriceOverride, RollupMove,
                                       UsageDayRollup, UsageDayTagRollup, UsageDimension, UsageEvent, UsageRollup,
                                       UsageTagRollup)
from costguardian.models.team import DomainJoin, Invitation
from costguardian.models.user import ExternalIdentity, PasswordResetToken, User

ALL_MODELS = [
    User, ExternalIdentity, PasswordResetToken,
    Organization, Department, Membership,
    AuditLog, OutboxMessage,
    Notification, NotificationSettings, NotificationPreference, WebhookEndpoint, Delivery, DeliveryAttempt,
    TemplateOverride, NotificationOnce,
    Invitation, DomainJoin,
    ApiKey, UsageEvent, UsageRollup, UsageTagRollup, UsageDimension, PriceOverride, ModelAlias,
    UsageDayRollup, UsageDayTagRollup,
    Budget, BudgetSpend, BudgetIncrease, BudgetAlert,
    ProviderCredential, GatewayReservation,
    GatewayRequest, GatewayRequestBody,
    Plan, BillingAccount, StripeEvent, Invoice, MeterReport,
    OnboardingProgress, DomainVerification,
    UserSession, Impersonation, PlatformSetting, GlobalPriceOverride, ErrorCount, TaskRun, PlatformToken,
    Conversation, ChatMessage,
    ProviderSyncConnection, ProviderUsageBucket, ProviderCostBucket, KnownProviderKey,
    ProviderKey, ProviderKeyMatch,
    OrgExport, RollupMove,
    OrgSettingsVersion,
]

__all__ = [
    "ChatMessage", "Conversation",
    "KnownProviderKey", "ProviderCostBucket", "ProviderKey", "ProviderKeyMatch", "ProviderSyncConnection",
    "ProviderUsageBucket",
    "ErrorCount", "GlobalPriceOverride", "Impersonation", "PlatformSetting", "PlatformToken", "TaskRun", "UserSession",
    "BillingAccount", "DomainVerification", "Invoice", "MeterReport", "OnboardingProgress", "Plan", "StripeEvent",
    "Budget", "BudgetAlert", "BudgetIncrease", "BudgetSpend",
    "Delivery", "DeliveryAttempt", "Notification", "NotificationOnce", "NotificationPreference", "NotificationSettings",
    "TemplateOverride", "WebhookEndpoint",
    "ALL_MODELS", "NO_DEPARTMENT", "NO_KEY", "NO_USER", "ApiKey", "ModelAlias", "PriceOverride", "UsageEvent",
    "UsageDayRollup", "UsageDayTagRollup", "UsageDimension", "UsageRollup", "UsageTagRollup", "AuditLog", "BaseModel", "Department", "DomainJoin", "ExternalIdentity", "GatewayRequest", "GatewayRequestBody", "GatewayReservation", "Invitation", "Membership",
    "Organization", "OrgExport", "OrgSettingsVersion", "OutboxMessage", "RollupMove", "PasswordResetToken", "ProviderCredential", "TenantModel", "User",
]
