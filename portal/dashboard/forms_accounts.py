"""Forms for owners managing themselves (sign-up, phone code, password reset, print details) and
for the admin's owner list."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

_PASSWORD = [DataRequired(message="Choose a password."), Length(min=10, max=200, message="Use 10 to 200 characters.")]


class _TwoPasswords(FlaskForm):
    password = PasswordField("Password", validators=_PASSWORD)
    confirm_password = PasswordField("Password again", validators=[DataRequired(message="Repeat the password.")])

    def validate_confirm_password(self, field: PasswordField) -> None:
        if field.data != self.password.data:
            raise ValidationError("The two passwords differ.")


class SignUpForm(_TwoPasswords):
    email = EmailField("Email", validators=[DataRequired(message="Enter your email."), Length(max=254)])
    phone = StringField("Your phone", validators=[DataRequired(message="Enter your phone number."), Length(max=20)],
                        description="We send a code to confirm it.")
    business_name = StringField("Business name", validators=[Optional(), Length(max=120)],
                                description="Printed on your vouchers, e.g. Mama Njeri Cafe.")


class ConfirmCodeForm(FlaskForm):
    code = StringField("Code", validators=[DataRequired(message="Enter the code we sent."), Length(max=12)])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(message="Enter your email."), Length(max=254)])


class ResetPasswordForm(_TwoPasswords):
    token = HiddenField(validators=[DataRequired(), Length(max=500)])
    password = PasswordField("New password", validators=_PASSWORD)


class PrintDetailsForm(FlaskForm):
    business_name = StringField("Business name", validators=[Optional(), Length(max=120)],
                                description="On every printed voucher (the router's name when empty).")
    support_phone = StringField("Support phone", validators=[Optional(), Length(max=20)],
                                description="Customers call it when a voucher does not work.")


class OwnerLockForm(FlaskForm):
    reason = TextAreaField("Why", validators=[
        DataRequired(message="Say why, in a few words: it goes into the audit log."),
        Length(min=3, max=500, message="Between 3 and 500 characters."),
    ])


class OwnerDeleteForm(FlaskForm):
    confirm_email = StringField("Type the owner's e-mail to confirm",
                                validators=[DataRequired(message="Type the e-mail."), Length(max=254)])
