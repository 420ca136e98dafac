"""Admin only: the owners, with lock, unlock and delete (portal/owners/owner_admin.py)."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for

from ..models import User
from ..owners import owner_admin
from ..owners.scope import NotFound
from . import bp
from .access import client_ip, register_object_param, require_admin
from .forms_accounts import OwnerDeleteForm, OwnerLockForm

register_object_param("owner_id", User)  # admin-only: User has no owner_id, so owners get 404


@bp.get("/owners", endpoint="owners")
def owners_list():  # type: ignore[no-untyped-def]
    require_admin()
    return render_template("dashboard/owners/list.html", owners=owner_admin.list_owners(),
                           lock_form=OwnerLockForm(formdata=None), delete_form=OwnerDeleteForm(formdata=None))


def _lock(owner_id: int, locked: bool):  # type: ignore[no-untyped-def]
    admin = require_admin()
    form = OwnerLockForm()
    if not form.validate_on_submit():
        flash(" ".join(form.reason.errors) or "Say why.", "warning")
        return redirect(url_for("dashboard.owners"), code=303)
    try:
        owner = owner_admin.set_locked(admin, owner_id, locked, reason=form.reason.data, source_ip=client_ip())
    except NotFound:
        abort(404)
    except owner_admin.OwnerActionError as exc:
        flash(str(exc), "warning")
    else:
        flash(f"{owner.email} {'locked: their sessions have ended' if locked else 'can sign in again'}.", "ok")
    return redirect(url_for("dashboard.owners"), code=303)


@bp.post("/owners/<int:owner_id>/lock", endpoint="owner_lock")
def owner_lock(owner_id: int):  # type: ignore[no-untyped-def]
    return _lock(owner_id, True)


@bp.post("/owners/<int:owner_id>/unlock", endpoint="owner_unlock")
def owner_unlock(owner_id: int):  # type: ignore[no-untyped-def]
    return _lock(owner_id, False)


@bp.post("/owners/<int:owner_id>/delete", endpoint="owner_delete")
def owner_delete(owner_id: int):  # type: ignore[no-untyped-def]
    admin = require_admin()
    form = OwnerDeleteForm()
    if form.validate_on_submit():
        try:
            email = owner_admin.delete_owner(admin, owner_id, confirm_email=form.confirm_email.data,
                                             source_ip=client_ip())
        except NotFound:
            abort(404)
        except owner_admin.OwnerActionError as exc:
            flash(str(exc), "warning")
        else:
            flash(f"{email} deleted.", "ok")
    else:
        flash(" ".join(form.confirm_email.errors), "warning")
    return redirect(url_for("dashboard.owners"), code=303)
