"""Extensions, created unbound; ``create_app`` binds them."""

from flask_babel import Babel
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
mail = Mail()
# Customer pages only: the captive blueprint sets g.lang (every other page is English) and
# installs the templates' _() itself (captive.language.install_page_gettext).
babel = Babel(configure_jinja=False)
