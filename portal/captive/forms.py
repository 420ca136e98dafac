"""Customer forms. Error messages are keys into ``i18n.TEXT``, so every error shows in the page's language."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone


def _valid_phone(form: FlaskForm, field: StringField) -> None:
    try:
        field.normalised = normalise_phone(field.data or "")
    except InvalidPhoneNumber as exc:
        raise ValidationError("err_phone_invalid") from exc


class HotspotFields(FlaskForm):
    """The router's login variables, carried through every customer form (checked again on arrival)."""

    mac = HiddenField()
    ip = HiddenField()
    link_login_only = HiddenField()
    link_orig = HiddenField()
    chap_id = HiddenField()
    chap_challenge = HiddenField()

    def hotspot_params(self) -> dict[str, str]:
        return {
            "mac": self.mac.data or "",
            "ip": self.ip.data or "",
            "link-login-only": self.link_login_only.data or "",
            "link-orig": self.link_orig.data or "",
            "chap-id": self.chap_id.data or "",
            "chap-challenge": self.chap_challenge.data or "",
        }

    def fill_hotspot(self, params: dict[str, str]) -> None:
        for name, value in params.items():
            getattr(self, name.replace("-", "_")).data = value


class BuyForm(HotspotFields):
    plan_id = IntegerField("Package", validators=[InputRequired(message="err_choose_plan")])
    phone = StringField(validators=[DataRequired(message="err_phone_required"), Length(max=32), _valid_phone])
    # One random value per rendered form: a second submit of the same form finds the first purchase.
    purchase_key = HiddenField(validators=[Length(max=64)])


class VoucherForm(HotspotFields):
    code = StringField(validators=[DataRequired(message="err_code_required"), Length(max=32, message="err_bad_code")])


class ReceiptForm(HotspotFields):
    receipt = StringField(
        validators=[DataRequired(message="err_receipt_required"), Length(max=32, message="err_receipt_not_found")]
    )


class RetryForm(FlaskForm):
    """The "send the prompt again" button: only the CSRF token and a fresh purchase key."""

    purchase_key = HiddenField(validators=[Length(max=64)])
