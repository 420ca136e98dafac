from flask import Blueprint

bp = Blueprint("captive", __name__)

from . import views  # noqa: E402,F401
