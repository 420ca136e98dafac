"""Re-encrypt every stored secret under the newest key."""

from __future__ import annotations

import sqlalchemy as sa

from ..core.crypto import rotate_secret
from ..core.extensions import db
from ..models import NotifySettings, Paybill, PaybillB2C, Router, TunnelHub

ENCRYPTED_COLUMNS = {
    Paybill: ("consumer_key_encrypted", "consumer_secret_encrypted", "passkey_encrypted", "access_token_encrypted", "webhook_token_encrypted"),
    Router: ("api_password_encrypted", "wg_private_key_encrypted"),
    TunnelHub: ("private_key_encrypted",),
    PaybillB2C: ("initiator_name_encrypted", "initiator_password_encrypted"),  # issue 15
    NotifySettings: ("at_api_key_encrypted",),  # issue 17: an owner's own Africa's Talking key
}


def rotate_all_secrets() -> int:
    """One transaction: every secret is re-encrypted, or none is."""
    count = 0
    for model, columns in ENCRYPTED_COLUMNS.items():
        for row in db.session.scalars(sa.select(model)):
            for column in columns:
                value = getattr(row, column)
                if value:
                    setattr(row, column, rotate_secret(value))
                    count += 1
    db.session.commit()
    return count
