"""Customer forms. Error messages are keys into ``wording.WORDS``, so every error shows in the page's language.

The router's login variables travel in every form as plain hidden inputs (``hotspot_params``), not
as form fields: three forms with six fields each cost more to build than the rest of the page."""

from __future__ import annotations

from typing import Any, NamedTuple

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


class ShownField(NamedTuple):
    """What a template reads of a field: a field shown before anything was submitted."""

    id: str
    data: Any = None
    errors: tuple[str, ...] = ()


class ShownForm:
    """A form as the plans page first shows it, without building a WTForms form: the page shows
    three, and building them cost about a sixth of the page's time. Submitted forms are real ones."""

    def __init__(self, **data: Any) -> None:
        for name, value in data.items():
            setattr(self, name, ShownField(name, value))


def blank_buy_form(*, purchase_key: str, phone: str) -> ShownForm:
    return ShownForm(plan_id=None, phone=phone, purchase_key=purchase_key, no_sms=False)


def blank_voucher_form(code: str = "") -> ShownForm:
    return ShownForm(code=code)


def blank_receipt_form() -> ShownForm:
    return ShownForm(receipt="")
class ResendForm(FlaskForm):
    """ "Send my code again" by SMS: only the CSRF token."""
