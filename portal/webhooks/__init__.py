from flask import Blueprint

bp = Blueprint("webhooks", __name__, url_prefix="/hooks")

from . import b2c, views  # noqa: E402,F401
