"""Forms for routers that sync by pull (kept apart from the API router form)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, ValidationError

from ..core.form_fields import WholeNumberField
from ..hotspot import pull_sync
from .forms import _ROUTEROS_NAME, RouterForm


class PullRouterForm(FlaskForm):
    """A router's settings without an API address or credentials: the portal never connects to it."""

    name = RouterForm.name
    sync_interval_s = WholeNumberField(
        "Sync every (seconds)",
        default=pull_sync.DEFAULT_INTERVAL_S,
        validators=[
            InputRequired(message="Enter the sync interval."),
            NumberRange(min=pull_sync.MIN_INTERVAL_S, max=pull_sync.MAX_INTERVAL_S,
                        message=f"From {pull_sync.MIN_INTERVAL_S} to {pull_sync.MAX_INTERVAL_S} seconds."),
        ],
        description="A customer who paid waits at most this long (plus a few seconds) to get online. "
        "Shorter costs the router and the portal one small HTTPS request per sync.",
    )
    hotspot_server = RouterForm.hotspot_server
    hotspot_dns_name = RouterForm.hotspot_dns_name
    paybill_id = RouterForm.paybill_id

    def validate_hotspot_server(self, field: StringField) -> None:
        # Stricter than for an API router: the name is written into the router's sync script.
        if field.data and not _ROUTEROS_NAME.match(field.data.strip()):
            raise ValidationError("Use letters, digits, dots, dashes and underscores only.")


class PullSetupForm(FlaskForm):
    form = SelectField(
        "RouterOS version",
        choices=[("json", "RouterOS 7.13 or later"), ("rsc", "RouterOS 6 (6.43+), or 7 before 7.13")],
        default="json",
        description="On the router: System → Resources, or /system resource print.",
    )
    hotspot_profile = StringField(
        "Hotspot server profile", default="hsprof1",
        validators=[DataRequired(message="Enter the profile name."), Length(max=64)],
    )
    html_directory = StringField(
        "Hotspot HTML directory", default="hotspot",
        validators=[DataRequired(message="Enter the directory."), Length(max=64)],
        description="Folder on the router holding login.html (flash/hotspot on boards with flash).",
    )

    def validate_hotspot_profile(self, field: StringField) -> None:
        if not _ROUTEROS_NAME.match(field.data or ""):
            raise ValidationError("Use letters, digits, dots, dashes and underscores only.")


class TransportForm(FlaskForm):
    transport = SelectField("Reached by", choices=[("api", "API (direct or tunnel)"), ("pull", "Pull sync")])
