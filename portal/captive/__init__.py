from flask import Blueprint

bp = Blueprint("captive", __name__)

from .language import install_page_gettext  # noqa: E402

bp.record_once(lambda state: install_page_gettext(state.app))

from . import views  # noqa: E402,F401
