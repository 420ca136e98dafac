"""Forms for the money pages: payments filters, problem actions, voucher batches, log filters.

Filters are GET forms (no CSRF: they change nothing); every POST form carries the CSRF token.
Each manual action on money asks for a reason, which goes into the audit log.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, Regexp, ValidationError

from ..core.form_fields import WholeNumberField
from ..hotspot.voucher_batches import MAX_BATCH, VOUCHER_VIEWS
from ..models import PAYMENT_STATES, WEBHOOK_KINDS, WEBHOOK_STATES, utcnow
from ..mpesa.errors import InvalidPhoneNumber
from ..mpesa.phones import normalise_phone
from ..owners.scope import nairobi_today

DAY_FORMATS = ("%Y-%m-%d", "%d %b %Y", "%d %B %Y", "%d %b, %Y", "%b %d %Y", "%B %d %Y", "%b %d, %Y", "%B %d, %Y",
               "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%y")


def parse_day(text: str, *, today: date | None = None) -> date:
    """A day as an owner types it: "2 Dec 2026", "2 december 2026", "2026-12-02", "02/12/2026"
    (day first, as in Kenya), "today", "yesterday". Raises ValueError."""
    cleaned = " ".join(text.replace(",", ", ").split()).strip().rstrip(".")
    lowered = cleaned.lower()
    today = today or nairobi_today(utcnow())
    if lowered in ("today", "yesterday"):
        return today - timedelta(days=lowered == "yesterday")
    for fmt in DAY_FORMATS:
        try:
            return datetime.strptime(cleaned.title() if "%b" in fmt or "%B" in fmt else cleaned, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


class DayField(StringField):
    """A date typed as text (a phone's date picker is optional): see ``parse_day``."""

    def process_formdata(self, valuelist: list[str]) -> None:
        self.raw = (valuelist[0] if valuelist else "").strip()
        if not self.raw:
            self.data = None
            return
        try:
            self.data = parse_day(self.raw)
        except ValueError as exc:
            self.data = None
            raise ValueError("Type a date like 2 Dec 2026 or 2026-12-02.") from exc

    def _value(self) -> str:
        if self.data:
            return f"{self.data.day} {self.data:%b %Y}"
        return getattr(self, "raw", "") or ""


class GetForm(FlaskForm):
    """A filter form read from the query string; changes nothing, so no CSRF token."""

    class Meta:
        csrf = False


def _date_range(form: FlaskForm, field: StringField) -> None:
    if field.data and form.date_from.data and field.data < form.date_from.data:
        raise ValidationError("The end date is before the start date.")


class PaymentFilterForm(GetForm):
    status = SelectField("Status", choices=[("", "any")] + [(s, s) for s in PAYMENT_STATES], validate_choice=True,
                         default="")
    router_id = SelectField("Router", coerce=int, default=0)
    phone = StringField("Phone", validators=[Optional(), Length(max=20)], description="07… or 2547…")
    receipt = StringField("M-Pesa receipt", validators=[
        Optional(), Regexp(r"^\s*[A-Za-z0-9]{6,20}\s*$", message="A receipt is 6–20 letters and digits.")])
    date_from = DayField("From", validators=[Optional()], description="e.g. 2 Dec 2026")
    date_to = DayField("To", validators=[Optional(), _date_range], description="e.g. 2026-12-02")

    def validate_phone(self, field: StringField) -> None:
        if field.data and field.data.strip():
            try:
                field.data = normalise_phone(field.data)
            except InvalidPhoneNumber as exc:
                raise ValidationError("Enter a Kenyan mobile number, e.g. 0712 345 678.") from exc


class ReasonForm(FlaskForm):
    reason = TextAreaField("Why", validators=[
        DataRequired(message="Say why, in a few words: it goes into the audit log."),
        Length(min=3, max=500, message="Between 3 and 500 characters."),
    ])


class RetryActivationForm(ReasonForm):
    pass


class QueryInitiationForm(ReasonForm):
    pass


class ResolvePaymentForm(ReasonForm):
    pass


class AcceptUnderpaidForm(ReasonForm):
    pass


class AssignPaymentForm(ReasonForm):
    voucher_code = StringField("Voucher code", validators=[
        DataRequired(message="Enter the voucher code the customer has."), Length(max=20)])


class IssueVoucherForm(ReasonForm):
    plan_id = SelectField("Plan", coerce=int, validators=[InputRequired(message="Choose a plan.")])
    router_id = SelectField("Router", coerce=int, validators=[InputRequired(message="Choose a router.")])
    allow_over_price = BooleanField("Issue it anyway if the plan costs more than was paid")


class VoucherSearchForm(GetForm):
    q = StringField("Code or phone", validators=[Optional(), Length(max=20)])
    status = SelectField("Show", choices=list(VOUCHER_VIEWS.items()), default="", validate_choice=True)


class BatchForm(FlaskForm):
    plan_id = SelectField("Plan", coerce=int, validators=[InputRequired(message="Choose a plan.")])
    router_id = SelectField("Router", coerce=int, validators=[InputRequired(message="Choose a router.")])
    count = WholeNumberField("How many", validators=[
        InputRequired(message="Enter how many vouchers to make."),
        NumberRange(min=1, max=MAX_BATCH, message=f"Between 1 and {MAX_BATCH}."),
    ], default=20)
    note = StringField("Note", validators=[Optional(), Length(max=200)], description="e.g. for the shop counter")


class DisableVoucherForm(ReasonForm):
    pass


class WebhookFilterForm(GetForm):
    kind = SelectField("Kind", choices=[("", "any")] + [(k, k) for k in WEBHOOK_KINDS], default="")
    status = SelectField("Status", choices=[("", "any")] + [(s, s) for s in WEBHOOK_STATES], default="")
    date_from = DayField("From", validators=[Optional()])
    date_to = DayField("To", validators=[Optional(), _date_range])
    text = StringField("CheckoutRequestID, TransID or account", validators=[Optional(), Length(max=64)])


class AuditFilterForm(GetForm):
    action = StringField("Action starts with", validators=[Optional(), Length(max=64)])
