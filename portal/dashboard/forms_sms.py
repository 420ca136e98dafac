"""SMS and alert settings (notify.accounts saves them; these only carry the fields)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Length, NumberRange, Optional, Regexp

from ..core.form_fields import WholeNumberField


class SmsSettingsForm(FlaskForm):
    customer_sms = BooleanField("Send customers their code by SMS once they are online")
    monthly_cap = WholeNumberField(
        "SMS per month",
        validators=[Optional(), NumberRange(min=0, max=1_000_000)],
        description="Customer messages stop for the month at this number. Empty: the platform's default.",
    )
    alert_phone = StringField(
        "Alert phone",
        validators=[Length(max=20)],
        description="Where alerts go by SMS, like 0712 345 678. Empty: your confirmed sign-up phone.",
    )
    alert_router_down = BooleanField("A router unreachable (or not syncing) for more than 10 minutes")
    alert_paybill_failing = BooleanField("A paybill's Daraja credentials failing")
    alert_problem_waiting = BooleanField("A problem waiting for more than an hour")
    alert_payout_failed = BooleanField("A payout failed")
    at_username = StringField(
        "Your own Africa's Talking username",
        validators=[Length(max=64)],
        description="Optional: send through your own account instead of the platform's.",
    )
    at_api_key = PasswordField(
        "Its API key",
        validators=[Length(max=200)],
        description="Stored encrypted, never shown again. Leave empty to keep the saved key.",
    )
    at_sender = StringField(
        "Its sender id",
        validators=[Length(max=16), Optional(), Regexp(r"^[A-Za-z0-9 ]+$")],
        description="Your registered sender id, if any.",
    )
    remove_own_account = BooleanField("Stop using my own account")
