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
        raise ValidationError(exc.customer_message) from exc


class BuyForm(FlaskForm):
    plan_id = IntegerField("Package", validators=[InputRequired(message="Choose a package.")])
    phone = StringField("M-Pesa phone number", validators=[DataRequired(message="Enter your phone number."), Length(max=32), _valid_phone])
    # One random value per rendered form: a second submit of the same form finds the first purchase.
    purchase_key = HiddenField(validators=[Length(max=64)])
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
