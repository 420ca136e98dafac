"""`flask keys rotate`: after it runs with a new key first, every secret is under the new key only."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from portal.core.extensions import db
from portal.owners.key_rotation import ENCRYPTED_COLUMNS

from .conftest import TEST_FERNET_KEY


def _stored_secrets() -> list[tuple[str, str]]:
    """(where, ciphertext) for every non-empty encrypted column of every row."""
    db.session.expire_all()
    found = []
    for model, columns in ENCRYPTED_COLUMNS.items():
        for row in db.session.scalars(sa.select(model)):
            for column in columns:
                value = getattr(row, column)
                if value:
                    key = getattr(row, "id", None) or row.owner_id  # notify_settings is keyed by its owner
                    found.append((f"{model.__tablename__}.{column} id={key}", value))
    return found


def _use_keys(app, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    app.config["ENCRYPTION_KEYS"] = [k.encode() for k in keys]
    app.extensions.pop("portal_fernet", None)  # the MultiFernet is cached per app


def test_every_encrypted_column_is_covered_by_rotation(app):
    from portal.models import EncryptedField

    for model in db.Model.__subclasses__():
        encrypted = {f"{name}_encrypted" for name, value in vars(model).items() if isinstance(value, EncryptedField)}
        assert encrypted <= set(ENCRYPTED_COLUMNS.get(model, ())), f"{model.__name__} has secrets the rotation skips"


def test_after_rotation_every_secret_is_under_the_new_key_and_none_under_the_old(
    app, shop, make_owner, make_paybill, make_router
):
    other = make_owner()
    make_paybill(other, kind="till")
    make_router(other, name="Second shop")
    from portal.notify.accounts import save_settings

    save_settings(other.id, at_username="other", at_api_key="atsk_other_owner_key")  # issue 17
    before = _stored_secrets()
    assert any("access_token" in where for where, _ in before), "the shop's token should be cached"
    plain_before = {where: Fernet(TEST_FERNET_KEY.encode()).decrypt(token.encode()) for where, token in before}
    new_key = Fernet.generate_key().decode()
    _use_keys(app, [new_key, TEST_FERNET_KEY])

    result = app.test_cli_runner().invoke(args=["keys", "rotate"])

    assert result.exit_code == 0, result.output
    assert f"re-encrypted {len(before)} secrets" in result.output
    after = _stored_secrets()
    assert {where for where, _ in after} == set(plain_before)
    old_only, new_only = Fernet(TEST_FERNET_KEY.encode()), Fernet(new_key.encode())
    for where, token in after:
        assert new_only.decrypt(token.encode()) == plain_before[where], where
        with pytest.raises(InvalidToken):
            old_only.decrypt(token.encode())
    # And the app, now holding only the new key, reads every secret.
    _use_keys(app, [new_key])
    db.session.expire_all()
    assert shop.router.api_password and shop.paybill.consumer_secret and shop.paybill.webhook_token
