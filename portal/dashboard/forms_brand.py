"""The owner's look on the customer pages (hotspot.brands validates; these only carry the fields)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import BooleanField, StringField
from wtforms.validators import Length

from ..hotspot.brands import LOGO_MAX_BYTES


class BrandForm(FlaskForm):
    hotspot_name = StringField(
        "Hotspot name", validators=[Length(max=60)], description="Shown at the top of every customer page."
    )
    accent = StringField("Accent colour", validators=[Length(max=7)], description="Like #0a7d33 (buttons and links).")
    support_phone = StringField(
        "Support phone", validators=[Length(max=20)], description="Customers see it in the footer and when a router is slow."
    )
    terms_url = StringField("Terms link", validators=[Length(max=300)], description="http:// or https:// address.")
    logo = FileField("Logo", description=f"PNG, JPEG or GIF, at most {LOGO_MAX_BYTES} bytes (a small, flat image).")
    remove_logo = BooleanField("Remove the logo")
