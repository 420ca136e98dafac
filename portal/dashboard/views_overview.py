"""Overview: revenue, success rate, time to online, customers online, two SVG charts."""

from __future__ import annotations

from typing import Any

from flask import render_template
from flask_login import current_user

from ..money import problems
from ..owners import reports
from . import bp
from .access import signed_in_user


@bp.context_processor
def _problems_badge() -> dict[str, Any]:
    # The nav badge on every dashboard page; a few indexed counts.
    if not current_user.is_authenticated:
        return {}
    return {"problems_count": problems.problems_count(signed_in_user())}


@bp.get("/overview", endpoint="overview")
def overview():  # type: ignore[no-untyped-def]
    data = reports.build_overview(signed_in_user())
    return render_template(
        "dashboard/overview/overview.html",
        data=data,
        revenue_chart=reports.revenue_chart(data.daily_revenue),
        results_chart=reports.results_chart(data.results),
        jobs=reports.scheduler_health(),
    )
