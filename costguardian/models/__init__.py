"""Every model, importable from one place; ALL_MODELS is what migrations must produce."""
from costguardian.models.audit import AuditLog
from costguardian.models.base import BaseModel, utcnow
from costguardian.models.keys import ApiKey
from costguardian.models.mail import OutboxMessage
from costguardian.models.org import Department, Membership, Organization, TenantModel
from costguardian.models.usage import (NO_DEPARTMENT, NO_KEY, NO_USER, ModelAlias, PriceOverride, UsageDimension,
                                       UsageEvent, UsageRollup, UsageTagRollup)
from costguardian.models.user import ExternalIdentity, PasswordResetToken, User

ALL_MODELS = [
    User, ExternalIdentity, PasswordResetToken,
    Organization, Department, Membership,
    AuditLog, OutboxMessage,
    ApiKey, UsageEvent, UsageRollup, UsageTagRollup, UsageDimension, PriceOverride, ModelAlias,
]

__all__ = [
    "ALL_MODELS", "NO_DEPARTMENT", "NO_KEY", "NO_USER", "ApiKey", "ModelAlias", "PriceOverride", "UsageEvent",
    "UsageDimension", "UsageRollup", "UsageTagRollup", "AuditLog", "BaseModel", "Department", "ExternalIdentity", "Membership",
    "Organization", "OutboxMessage", "PasswordResetToken", "TenantModel", "User", "utcnow",
]
