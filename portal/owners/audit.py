"""Who changed what: one row in audit_log per credential change, sign-in, manual resolution, batch.

``record`` only adds the row to the session; it commits with the caller's unit of work, so an
action and its audit entry land together or not at all.
"""

from __future__ import annotations

from typing import Any

from ..core.extensions import db
from ..models import AuditLog, User

SYSTEM_ACTOR = "system"
MAX_DETAIL = 2000


def record(
    action: str,
    *,
    actor: User | str | None = None,
    owner_id: int | None = None,
    object_type: str | None = None,
    object_id: Any = None,
    detail: str | None = None,
    source_ip: str | None = None,
) -> AuditLog:
    """Add an audit row (no commit). ``actor`` is the signed-in user, or a label like "cli".

    ``owner_id`` is whose data it concerns (defaults to the actor's own id for an owner), so an
    owner's log page shows what admins did to their things too. ``detail`` must never hold a secret.
    """
    actor_id = actor.id if isinstance(actor, User) else None
    actor_label = actor.email if isinstance(actor, User) else (actor or SYSTEM_ACTOR)
    if owner_id is None and isinstance(actor, User) and not actor.is_admin:
        owner_id = actor.id
    entry = AuditLog(
        owner_id=owner_id,
        actor_id=actor_id,
        actor=actor_label[:254],
        action=action[:64],
        object_type=object_type[:32] if object_type else None,
        object_id=str(object_id)[:64] if object_id is not None else None,
        detail=detail[:MAX_DETAIL] if detail else None,
        source_ip=source_ip[:45] if source_ip else None,
    )
    db.session.add(entry)
    return entry
