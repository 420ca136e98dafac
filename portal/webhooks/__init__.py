from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/hooks")

from . import b2c, sms_reports, views  # noqa: E402,F401  (sms_reports: issue 17, SMS delivery reports)
