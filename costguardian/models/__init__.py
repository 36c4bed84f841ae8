"""Every model, importable from one place; ALL_MODELS is what migrations must produce."""
from costguardian.models.audit import AuditLog
from costguardian.models.base import BaseModel, utcnow
from costguardian.models.mail import OutboxMessage
from costguardian.models.org import Department, Membership, Organization, TenantModel
from costguardian.models.user import ExternalIdentity, PasswordResetToken, User

ALL_MODELS = [
    User, ExternalIdentity, PasswordResetToken,
    Organization, Department, Membership,
    AuditLog, OutboxMessage,
]

__all__ = [
    "ALL_MODELS", "AuditLog", "BaseModel", "Department", "ExternalIdentity", "Membership",
    "Organization", "OutboxMessage", "PasswordResetToken", "TenantModel", "User", "utcnow",
]
