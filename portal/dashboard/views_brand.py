"""The customer pages' look: the owner's brand, and each router's overrides (hotspot.brands)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from ..core.extensions import db
from ..hotspot import brands
from ..models import Router, User
from ..owners import audit
from . import bp
from .access import client_ip, get_owned_or_404, signed_in_user
from .forms_brand import BrandForm

FIELDS = ("hotspot_name", "accent", "support_phone", "terms_url")


@bp.route("/brand", methods=["GET", "POST"])
def brand_owner():  # type: ignore[no-untyped-def]
    return _brand_page(signed_in_user(), None)


@bp.route("/routers/<int:router_id>/brand", methods=["GET", "POST"])
def brand_router(router_id: int):  # type: ignore[no-untyped-def]
    router = get_owned_or_404(Router, router_id)
    return _brand_page(router.owner, router)


def _brand_page(owner: User, router: Router | None):  # type: ignore[no-untyped-def]
    row = brands.brand_row(owner, router)
    form = BrandForm(data={name: getattr(row, name) or "" for name in FIELDS} if row else None)
    if form.validate_on_submit():
        upload = form.logo.data
        logo_bytes = upload.read(brands.LOGO_MAX_BYTES + 1) if upload and upload.filename else None
        try:
            brands.save_brand(
                owner,
                router,
                **{name: getattr(form, name).data or "" for name in FIELDS},
                logo_bytes=logo_bytes,
                remove_logo=form.remove_logo.data,
            )
        except brands.BrandError as exc:
            getattr(form, exc.field).errors = [*getattr(form, exc.field).errors, str(exc)]
        else:
            audit.record(
                "brand_changed",
                actor=signed_in_user(),
                owner_id=owner.id,
                object_type="router" if router else "owner",
                object_id=router.id if router else owner.id,
                source_ip=client_ip(),
            )
            db.session.commit()
            flash("Customer page look saved.", "ok")
            return redirect(request.path)
    status = 400 if request.method == "POST" else 200
    shown = brands.brand_for(router.id) if router else None
    page = render_template(
        "dashboard/brand.html",
        form=form,
        router=router,
        row=row,
        shown=shown,
        owner_url=url_for("dashboard.brand_owner"),
    )
    return page, status
