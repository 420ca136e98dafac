"""Dashboard forms. Every POST goes through one of these, so every POST carries a CSRF token."""

from __future__ import annotations

import ipaddress
import re

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ..core import durations, sizes
from ..core.form_fields import WholeNumberField
from ..hotspot.routers import is_hotspot_dns_name
from ..models import ENVIRONMENTS, VALIDITY_MODES


class ActionForm(FlaskForm):
    """Only the CSRF token: for one-button POSTs ("test connection", "retry now", "rotate")."""


# --- accounts --------------------------------------------------------------------------------


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(message="Enter your email."), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."), Length(max=200)])
    next = HiddenField()


class PasswordChangeForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(message="Enter your current password.")]
    )
    new_password = PasswordField(
        "New password",
        validators=[
            DataRequired(message="Enter a new password."),
            Length(min=10, max=200, message="Use 10 to 200 characters."),
        ],
    )
    confirm_password = PasswordField(
        "New password again", validators=[DataRequired(message="Repeat the new password.")]
    )

    def validate_confirm_password(self, field: PasswordField) -> None:
        if field.data != self.new_password.data:
            raise ValidationError("The two new passwords differ.")


# --- routers ---------------------------------------------------------------------------------

_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253})$")
_ROUTEROS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _valid_host(form: FlaskForm, field: StringField) -> None:
    value = (field.data or "").strip()
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if not _HOST.match(value) or ".." in value:
        raise ValidationError("Enter an IP address or a host name, like 203.0.113.10 or router.example.com.")


def _valid_hotspot_dns_name(form: FlaskForm, field: StringField) -> None:
    """A host name (no scheme, path or IP), kept lower-case without a trailing dot."""
    value = (field.data or "").strip().rstrip(".").lower()
    if not value:
        return
    if not is_hotspot_dns_name(value):
        raise ValidationError("Enter a host name like wifi.cafe.co.ke (without http:// or a path).")
    field.data = value


class RouterForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the router a name."), Length(max=120)],
        description='Customers see it on the plans page, e.g. "Mama Njeri Cafe".',
    )
    # Issue 13: shown only when the portal has a WireGuard hub (PORTAL_TUNNEL_ENDPOINT).
    connection_mode = RadioField(
        "How the portal reaches the router",
        choices=[
            ("direct", "Directly, at its address (a public IP, a VPN or LAN address)"),
            ("tunnel", "Over the portal's WireGuard tunnel: RouterOS 7, works behind any NAT, no public IP needed"),
        ],
        default="direct",
    )
    host = StringField(
        "Address",
        validators=[Length(max=255)],
        description="Where the portal reaches the router's API: public IP, VPN address or DNS name. "
        "Not needed for a tunnel router (it gets a tunnel address).",
    )
    port = WholeNumberField(
        "API port",
        default=8728,
        validators=[
            InputRequired(message="Enter the API port."),
            NumberRange(min=1, max=65535, message="A port is a number from 1 to 65535."),
        ],
        description="8728 for api, 8729 for api-ssl.",
    )
    use_tls = BooleanField("Use api-ssl (TLS)")
    api_username = StringField(
        "API user",
        default="voucher-portal",
        validators=[DataRequired(message="Enter the API user name."), Length(max=64)],
    )
    api_password = PasswordField("API password", validators=[Length(max=200)])
    hotspot_server = StringField(
        "Hotspot server",
        validators=[Optional(), Length(max=64)],
        description="Leave empty to use every hotspot server on the router.",
    )
    hotspot_dns_name = StringField(
        "Hotspot DNS name",
        validators=[Optional(), Length(max=255), _valid_hotspot_dns_name],
        description="The hotspot profile's DNS name (IP → Hotspot → Server Profiles), e.g. wifi.cafe.co.ke. "
        "Customers are logged in only at this name or the router's private address.",
    )
    paybill_id = SelectField("Paybill or till", coerce=int, default=0)
    wifi_name = StringField(
        "Wi-Fi name",
        validators=[Optional(), Length(max=64)],
        description="The network customers join (SSID); printed on cash vouchers.",
    )

    def __init__(self, *args: object, is_new: bool = True, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.is_new = is_new
        self.api_password.description = (
            "Stored encrypted." if is_new else "Leave empty to keep the stored password (it is never shown)."
        )

    @property
    def is_tunnel(self) -> bool:
        return self.connection_mode.data == "tunnel"

    def validate_host(self, field: StringField) -> None:
        if self.is_tunnel:
            return
        if not (field.data or "").strip():
            raise ValidationError("Enter the router's address.")
        _valid_host(self, field)

    def validate_api_password(self, field: PasswordField) -> None:
        # A tunnel router's API user and password come from its setup script.
        if self.is_new and not field.data and not self.is_tunnel:
            raise ValidationError("Enter the API password.")



class SetupScriptForm(FlaskForm):
    api_username = StringField(
        "API user to create",
        default="voucher-portal",
        validators=[DataRequired(message="Enter a user name."), Length(max=40)],
    )
    portal_address = StringField(
        "Portal's address as the router sees it",
        validators=[Optional(), Length(max=64)],
        description="IP or network (203.0.113.10 or 10.8.0.0/24) the portal connects from. "
        "Empty = any address (less safe).",
    )
    hotspot_profile = StringField(
        "Hotspot server profile",
        default="hsprof1",
        validators=[DataRequired(message="Enter the profile name."), Length(max=64)],
    )
    html_directory = StringField(
        "Hotspot HTML directory",
        default="hotspot",
        validators=[DataRequired(message="Enter the directory."), Length(max=64)],
        description="Folder on the router holding login.html (flash/hotspot on boards with flash).",
    )

    def validate_api_username(self, field: StringField) -> None:
        if not _ROUTEROS_NAME.match(field.data or ""):
            raise ValidationError("Use letters, digits, dots, dashes and underscores only.")

    def validate_hotspot_profile(self, field: StringField) -> None:
        self.validate_api_username(field)

    def validate_html_directory(self, field: StringField) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", field.data or "") or ".." in field.data:
            raise ValidationError("Use a folder name like hotspot or flash/hotspot.")

    def validate_portal_address(self, field: StringField) -> None:
        if field.data:
            try:
                ipaddress.ip_network(field.data.strip(), strict=False)
            except ValueError as exc:
                raise ValidationError("Enter an IP address or a network like 10.8.0.0/24.") from exc


class SetupConfirmForm(FlaskForm):
    """Carries the generated API credentials back, sealed (encrypted and authenticated) by the portal."""

    sealed = HiddenField(validators=[DataRequired(), Length(max=2000)])


class DisconnectForm(FlaskForm):
    session_id = HiddenField(validators=[DataRequired(), Length(max=20)])

    def validate_session_id(self, field: HiddenField) -> None:
        if not re.fullmatch(r"\*[0-9A-Fa-f]{1,16}", field.data or ""):
            raise ValidationError("Not a RouterOS session id.")


# --- paybills --------------------------------------------------------------------------------

_SHORTCODE = re.compile(r"^\d{5,7}$")


def _shortcode(form: FlaskForm, field: StringField) -> None:
    if field.data and not _SHORTCODE.match(field.data.strip()):
        raise ValidationError("A shortcode is 5 to 7 digits.")


class PaybillForm(FlaskForm):
    # Admins only (removed for owners): whose paybill it is; 0 = the platform's own, the fallback.
    owner_id = SelectField("Belongs to", coerce=int, default=0)
    name = StringField("Name", validators=[Optional(), Length(max=120)])
    type = SelectField("Type", choices=[("paybill", "Paybill"), ("till", "Till (Buy Goods)")], default="paybill")
    number = StringField("Paybill or till number", validators=[DataRequired(message="Enter the number."), _shortcode])
    store_number = StringField(
        "Store number (till only)",
        validators=[Optional(), _shortcode],
        description="The HO/store number Daraja uses as BusinessShortCode.",
    )
    environment = SelectField("Environment", choices=[(e, e.title()) for e in ENVIRONMENTS], default="sandbox")
    consumer_key = PasswordField("Consumer key", validators=[Optional(), Length(max=200)])
    consumer_secret = PasswordField("Consumer secret", validators=[Optional(), Length(max=200)])
    passkey = PasswordField("Passkey", validators=[Optional(), Length(max=200)])
    status = SelectField("Status", choices=[("active", "Active"), ("inactive", "Inactive")], default="active")

    SECRET_FIELDS = ("consumer_key", "consumer_secret", "passkey")

    def __init__(self, *args: object, is_new: bool = True, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.is_new = is_new
        for name in self.SECRET_FIELDS:
            self[name].description = "Stored encrypted." if is_new else "Leave empty to keep the stored value."

    def validate(self, extra_validators=None) -> bool:  # type: ignore[no-untyped-def,override]
        ok = super().validate(extra_validators)
        if self.is_new:
            for name in self.SECRET_FIELDS:
                if not self[name].data:
                    self[name].errors = [*self[name].errors, f"Enter the {self[name].label.text.lower()}."]
                    ok = False
        if self.type.data == "till" and not self.store_number.data:
            self.store_number.errors = [*self.store_number.errors, "A till needs its store number."]
            ok = False
        return ok


# --- plans -----------------------------------------------------------------------------------

# RouterOS rate-limit rx/tx from the router's view, optionally with bursts: "2M/5M", "512k/1M", "1M".
_RATE = r"\d+(\.\d+)?[kKmMgG]?"
RATE_LIMIT = re.compile(rf"^{_RATE}(/{_RATE})?(\s+{_RATE}(/{_RATE})?){{0,3}}(\s+\d+(/\d+)?)?$")


class PlanForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the plan a name."), Length(max=80)],
        description='What customers see, e.g. "1 Hour".',
    )
    price = WholeNumberField(
        "Price (KES)",
        validators=[
            InputRequired(message="Enter a price in whole shillings."),
            NumberRange(min=1, max=250000, message="The price is whole shillings, from 1 to 250,000."),
        ],
    )
    duration = StringField(
        "Duration",
        validators=[DataRequired(message="Enter how long it lasts."), Length(max=20)],
        description="3h, 3 hours, 90 min, 1 day or 1h30m.",
    )
    validity_mode = SelectField(
        "Counts",
        choices=[("wall_clock", "Clock time from first login"), ("connected_time", "Connected time only")],
        default="wall_clock",
    )
    data_limit = StringField(
        "Data limit",
        validators=[Optional(), Length(max=20)],
        description="Total up + down, e.g. 500MB, 500M or 2G. Empty = no limit.",
    )
    rate_limit = StringField(
        "Speed limit",
        validators=[Optional(), Length(max=64)],
        description="RouterOS upload/download, e.g. 2M/5M or 512k/1M. Empty = no limit.",
    )
    devices = WholeNumberField(
        "Devices per voucher",
        default=1,
        validators=[Optional(), NumberRange(min=1, max=50, message="From 1 to 50 devices.")],
        description="How many phones or laptops may be online at once with one code (RouterOS shared-users). Empty = 1.",
    )
    lock_to_device = BooleanField(
        "Lock to the buying device",
        description=(
            "Only the device that paid can log in with the code (its MAC address is set on the hotspot user). "
            "Phones keep one MAC address per Wi-Fi network by default, so the same phone gets back in; "
            "a customer who turns off \"private\"/random MAC per network, or forgets the network, may be refused. "
            "Printed cash vouchers are never locked (no device bought them)."
        ),
    )
    # "All routers" is a choice of its own: an empty tick list never silently means "everywhere".
    sold_on = RadioField(
        "Sold on",
        choices=[("all", "Every router (also routers added later)"), ("some", "Only the routers ticked below")],
        validate_choice=False,
    )
    router_ids = SelectMultipleField(
        "Routers", coerce=int, validate_choice=True, widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    sort_order = WholeNumberField(
        "Position",
        default=0,
        validators=[Optional(), NumberRange(min=-1000, max=1000)],
        description="Lower numbers are listed first.",
    )

    # Set by the validators below: the parsed values the service takes.
    duration_s: int = 0
    data_limit_bytes: int | None = None

    def validate_sold_on(self, field: RadioField) -> None:
        if field.data not in ("all", "some"):  # an older form, or a script: the ticks say it
            field.data = "some" if self.router_ids.data else "all"
        if field.data == "all":
            self.router_ids.data = []
        elif not self.router_ids.data:
            raise ValidationError("Tick at least one router, or choose every router.")

    def validate_validity_mode(self, field: SelectField) -> None:
        if field.data not in VALIDITY_MODES:
            raise ValidationError("Choose how the time counts.")

    def validate_duration(self, field: StringField) -> None:
        try:
            self.duration_s = durations.parse_duration(field.data or "")
        except durations.BadDuration as exc:
            raise ValidationError(str(exc)) from exc
        if self.duration_s <= 0 or self.duration_s > 366 * 86400:
            raise ValidationError("The duration must be more than zero and at most a year.")

    def validate_data_limit(self, field: StringField) -> None:
        self.data_limit_bytes = None
        if field.data:
            try:
                self.data_limit_bytes = sizes.parse_bytes(field.data)
            except sizes.BadSize as exc:
                raise ValidationError(f"Use forms like {sizes.EXAMPLES}.") from exc
            if self.data_limit_bytes <= 0:
                raise ValidationError("A data limit must be more than zero (leave it empty for no limit).")

    def validate_rate_limit(self, field: StringField) -> None:
        if field.data and not RATE_LIMIT.match(field.data.strip()):
            raise ValidationError("Use RouterOS upload/download like 2M/5M or 512k/1M.")
