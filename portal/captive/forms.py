"""Customer forms. Error messages are keys into ``wording.WORDS``, so every error shows in the page's language.

The router's login variables travel in every form as plain hidden inputs (``hotspot_params``), not
as form fields: three forms with six fields each cost more to build than the rest of the page."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, ValidationError

from ..core.form_fields import WholeNumberField
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone


def _valid_phone(form: FlaskForm, field: StringField) -> None:
    try:
        field.normalised = normalise_phone(field.data or "")
    except InvalidPhoneNumber as exc:
        raise ValidationError("err_phone_invalid") from exc


class BuyForm(FlaskForm):
    plan_id = WholeNumberField("Package", validators=[InputRequired(message="err_choose_plan")])
    phone = StringField(validators=[DataRequired(message="err_phone_required"), Length(max=32), _valid_phone])
    # One random value per rendered form: a second submit of the same form finds the first purchase.
    purchase_key = HiddenField(validators=[Length(max=64)])
    no_sms = BooleanField()  # issue 17: "do not send me my code by SMS"


class VoucherForm(FlaskForm):
    code = StringField(validators=[DataRequired(message="err_code_required"), Length(max=32, message="err_bad_code")])


class ReceiptForm(FlaskForm):
    receipt = StringField(
        validators=[DataRequired(message="err_receipt_required"), Length(max=32, message="err_receipt_not_found")]
    )


class RetryForm(FlaskForm):
    """The "send the prompt again" button: only the CSRF token and a fresh purchase key."""

    purchase_key = HiddenField(validators=[Length(max=64)])


class ResendForm(FlaskForm):
    """ "Send my code again" by SMS: only the CSRF token."""
