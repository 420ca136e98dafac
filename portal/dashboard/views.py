"""Owner dashboard (the full dashboard is issue 4); for now a sign-in-protected landing page."""

from flask import render_template
from flask_login import login_required

from . import bp


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    return render_template("dashboard/error.html", heading="Dashboard", message="Coming soon.")
