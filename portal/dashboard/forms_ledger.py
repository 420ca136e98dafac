"""Forms for the Balance, Payouts and refund actions (issue 15)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ..core.form_fields import WholeNumberField
from ..models import LEDGER_ACCOUNTS, LEDGER_KINDS
from .forms_money import DayField, ReasonForm


class StatementFilterForm(FlaskForm):
    """GET filters of the statement (no CSRF: they change nothing)."""

    class Meta:
        csrf = False

    owner = WholeNumberField("Owner", validators=[Optional(), NumberRange(min=1)])
    kind = SelectField("Kind", choices=[("", "any")] + [(k, k) for k in LEDGER_KINDS], validators=[Optional()])
    account = SelectField("Account", choices=[("", "any"), *((a, a) for a in LEDGER_ACCOUNTS)], validators=[Optional()])
    date_from = DayField("From")
    date_to = DayField("To")
    before = WholeNumberField("Before", validators=[Optional(), NumberRange(min=1)])


class RefundForm(ReasonForm):
    phone = StringField("Customer's phone (when M-Pesa did not give it)", validators=[Optional(), Length(max=20)])
    note = TextAreaField("How you refunded by hand (paybills without B2C)", validators=[Optional(), Length(max=300)])


class PayoutPhoneForm(FlaskForm):
    phone = StringField("Payout phone", validators=[DataRequired(message="Enter a phone like 0712 345 678."),
                                                     Length(max=20)])


class RequestPayoutForm(FlaskForm):
    amount = WholeNumberField("Amount (KES, empty = all available)", validators=[Optional(), NumberRange(min=10, max=250000)])


class AdjustmentForm(ReasonForm):
    owner_id = WholeNumberField("Owner", validators=[DataRequired(), NumberRange(min=1)])
    amount = WholeNumberField("Amount (KES, minus for a debit)", validators=[DataRequired(),
                                                                             NumberRange(min=-10_000_000, max=10_000_000)])


class PaybillB2CForm(FlaskForm):
    initiator_name = StringField("Initiator (API operator) name", validators=[DataRequired(), Length(max=64)])
    initiator_password = StringField("Initiator password", validators=[DataRequired(), Length(max=128)])
