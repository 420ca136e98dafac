"""GET /healthz: database reachability, scheduler runs, backlog counts."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from ..models import Activation, JobRun, StkInitiation, utcnow
from ..tunnel.status import hub_health
from .extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception as exc:  # the one place a broad catch is the point
        db.session.rollback()
        return jsonify({"database": "unreachable", "error": type(exc).__name__}), 503
    stuck_after = utcnow() - timedelta(seconds=current_app.config["PORTAL_RECONCILE_AFTER_S"])
    body = {
        "database": "ok",
        "pending_activations": db.session.scalar(
            sa.select(sa.func.count()).select_from(Activation).where(Activation.status.in_(("pending", "failed", "running")))
        ),
        "stuck_initiations": db.session.scalar(
            sa.select(sa.func.count())
            .select_from(StkInitiation)
            .where(StkInitiation.status == "initiated", StkInitiation.created_at < stuck_after)
        ),
        "jobs": {
            run.name: {
                "last_finished_at": run.last_finished_at.isoformat() if run.last_finished_at else None,
                "last_status": run.last_status,  # the error text is for a signed-in admin (dashboard overview)
            }
            for run in db.session.scalars(sa.select(JobRun))
        },
        "tunnel": hub_health(),  # issue 13: the WireGuard hub's last sync and its stale peers
    }
    return jsonify(body)
