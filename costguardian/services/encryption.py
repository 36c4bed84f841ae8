"""Re-encrypting every secret stored at rest under the newest key
(`flask rotate-encryption`).

CG_ENCRYPTION_KEYS lists Fernet keys, newest first; every key decrypts, the
first encrypts. Rotating a key is: put the new key first, run this, then
drop the old key. Each token that the newest key cannot already open is
decrypted with whichever key can and encrypted again with the newest one;
a token already under the newest key is left alone, so a second run changes
nothing. Each row is written with a conditional UPDATE (only if its token
is still the one read), so a secret replaced meanwhile is never overwritten
with an older one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.fernet import InvalidToken

from costguardian import crypto
from costguardian.db import write_transaction
from costguardian.models import ProviderCredential, ProviderSyncConnection, WebhookEndpoint

# Every encrypted column: (model, field name, what it is, for the report).
ENCRYPTED_FIELDS = (
    (ProviderCredential, "secret_encrypted", "provider credentials"),
    (WebhookEndpoint, "secret_encrypted", "webhook signing secrets"),
    (ProviderSyncConnection, "secret_encrypted", "provider admin keys"),
)
BATCH = 200


@dataclass
class RotationReport:
    rotated: dict[str, int] = field(default_factory=dict)  # re-encrypted now
    current: dict[str, int] = field(default_factory=dict)  # already under the newest key
    unreadable: list[str] = field(default_factory=list)  # "what #id": no configured key opens it

    @property
    def ok(self) -> bool:
        return not self.unreadable


def rotate_all() -> RotationReport:
    report = RotationReport()
    for model, field_name, what in ENCRYPTED_FIELDS:
        column = getattr(model, field_name)
        report.rotated[what] = report.current[what] = 0
        last_id = 0
        while True:
            rows = list(model.select(model.id, column).where(model.id > last_id)
                        .order_by(model.id).limit(BATCH).tuples())
            if not rows:
                break
            last_id = rows[-1][0]
            with write_transaction():
                for row_id, token in rows:
                    try:
                        fresh = crypto.reencrypted(token)
                    except InvalidToken:
                        report.unreadable.append(f"{what} #{row_id}")
                        continue
                    if fresh is None:
                        report.current[what] += 1
                        continue
                    changed = model.update({column: fresh}).where(model.id == row_id, column == token).execute()
                    report.rotated[what] += changed
    return report
