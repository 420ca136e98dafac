"""Plan pages: create, edit, retire; price, duration, data and speed limits checked; router choice."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from portal.core.extensions import db
from portal.hotspot import catalogue
from portal.models import Plan

from .dashboard_support import field_errors


def _plan(plan_id: int) -> Plan:
    db.session.expire_all()
    return db.session.get(Plan, plan_id)


def _form(**overrides: object) -> dict[str, object]:
    data = {
        "name": "1 Hour",
        "price": "20",
        "duration": "1h",
        "validity_mode": "wall_clock",
        "data_limit": "500MB",
        "rate_limit": "2M/5M",
        "sort_order": "1",
    }
    data.update(overrides)
    return data


def test_plan_list_renders_empty_and_with_plans(app, signed_in, make_plan):
    owner, b = signed_in()
    assert "No plans yet" in b.get("/dashboard/plans").text
    make_plan(owner, name="Daily", price=50, duration_s=86400, rate_limit="1M/2M")
    page = b.get("/dashboard/plans").text
    assert "Daily" in page and "KES 50" in page and "1 day" in page and "1M/2M" in page and "every router" in page


def test_a_good_plan_is_saved_with_parsed_limits_and_chosen_routers(app, signed_in, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    make_router(owner, name="Second")
    assert b.get("/dashboard/plans/new").status_code == 200

    response = b.post("/dashboard/plans/new", _form(duration="1d", data_limit="1.5GB", router_ids=[str(router.id)]))

    assert response.status_code == 302, field_errors(response.text)
    plan = db.session.scalars(sa.select(Plan).where(Plan.owner_id == owner.id)).one()
    assert (plan.name, plan.price, plan.duration_s, plan.rate_limit) == ("1 Hour", 20, 86400, "2M/5M")
    assert plan.data_limit_bytes == int(1.5 * (1 << 30)) and plan.validity_mode == "wall_clock"
    assert [r.id for r in plan.routers] == [router.id]
    assert catalogue.plans_for_router(router) == [plan]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("2g", 2 << 30), ("500M", 500 << 20), ("1.5G", int(1.5 * (1 << 30))), ("10k", 10 << 10), ("2GB", 2 << 30)],
)
def test_plan_form_takes_data_limits_the_way_routeros_writes_them(app, signed_in, typed, expected):
    owner, b = signed_in()
    response = b.post("/dashboard/plans/new", _form(data_limit=typed))
    assert response.status_code == 302, field_errors(response.text)
    assert db.session.scalars(sa.select(Plan).where(Plan.owner_id == owner.id)).one().data_limit_bytes == expected


@pytest.mark.parametrize("junk", ["2 gigs", "G", "1.5.5G", "-1G", "2T"])
def test_plan_form_refuses_a_data_limit_it_cannot_read(app, signed_in, junk):
    _, b = signed_in()
    response = b.post("/dashboard/plans/new", _form(data_limit=junk))
    assert response.status_code == 400
    assert "Use forms like 500MB, 500M, 2GB, 2G or a number of bytes." in field_errors(response.text)


def test_plan_form_rejects_bad_input_next_to_each_field(app, signed_in):
    _, b = signed_in()
    response = b.post(
        "/dashboard/plans/new", _form(name="", price="0", duration="forever", data_limit="lots", rate_limit="fast")
    )
    assert response.status_code == 400
    errors = field_errors(response.text)
    assert "Give the plan a name." in errors
    assert "The price is whole shillings, from 1 to 250,000." in errors
    assert "Use forms like 3h, 3 hours, 90 min, 1 day, 1h30m or 2 weeks." in errors
    assert "Use forms like 500MB, 500M, 2GB, 2G or a number of bytes." in errors
    assert "Use RouterOS upload/download like 2M/5M or 512k/1M." in errors
    fractional = b.post("/dashboard/plans/new", _form(price="9.50"))
    assert fractional.status_code == 400 and field_errors(fractional.text)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Plan)) == 0


def test_rate_limits_in_routeros_forms_are_accepted(app, signed_in):
    _, b = signed_in()
    for rate in ("512k/1M", "2M/5M", "1M", "10M/10M 20M/20M 8M/8M 10/10"):
        response = b.post("/dashboard/plans/new", _form(name=rate, rate_limit=rate, data_limit=""))
        assert response.status_code == 302, (rate, field_errors(response.text))


def test_a_plan_cannot_be_sold_on_another_owners_router(app, signed_in, make_owner, make_router):
    _, b = signed_in()
    theirs = make_router(make_owner(), name="Not yours")
    response = b.post("/dashboard/plans/new", _form(router_ids=[str(theirs.id)]))
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Plan)) == 0


def test_editing_shows_the_current_values_and_saves_changes(app, signed_in, make_plan):
    owner, b = signed_in()
    plan = make_plan(owner, duration_s=5400, data_limit_bytes=500 * 1024 * 1024, rate_limit="2M/5M")
    page = b.get(f"/dashboard/plans/{plan.id}/edit").text
    assert 'value="1h30m"' in page and 'value="500MB"' in page and 'value="2M/5M"' in page

    response = b.post(
        f"/dashboard/plans/{plan.id}/edit",
        _form(name="Evening", price="15", duration="30m", data_limit="", rate_limit="", validity_mode="connected_time"),
    )

    assert response.status_code == 302, field_errors(response.text)
    saved = _plan(plan.id)
    assert (
        saved.name,
        saved.price,
        saved.duration_s,
        saved.data_limit_bytes,
        saved.rate_limit,
        saved.validity_mode,
    ) == ("Evening", 15, 1800, None, None, "connected_time")


def test_retiring_a_plan_stops_selling_it(app, signed_in, make_plan, make_router):
    owner, b = signed_in()
    router = make_router(owner)
    plan = make_plan(owner)
    assert catalogue.plans_for_router(router) == [plan]

    b.post(f"/dashboard/plans/{plan.id}/retire")

    assert _plan(plan.id).is_active is False
    assert catalogue.plans_for_router(router) == []
    assert "retired" in b.get("/dashboard/plans").text
    b.post(f"/dashboard/plans/{plan.id}/restore")
    assert _plan(plan.id).is_active is True


def test_durations_are_taken_as_people_type_them(app, signed_in):
    _, b = signed_in()
    for typed, seconds in (("3h", 10800), ("3 hours", 10800), ("90 min", 5400), ("1 day", 86400),
                           ("1h30m", 5400), ("2 weeks", 1209600), ("1 day 12 hours", 129600)):
        response = b.post("/dashboard/plans/new", _form(name=f"Plan {typed}", duration=typed))
        assert response.status_code == 302, (typed, field_errors(response.text))
        assert db.session.scalars(sa.select(Plan.duration_s).where(Plan.name == f"Plan {typed}")).one() == seconds
    response = b.post("/dashboard/plans/new", _form(name="Odd", duration="3 moons"))
    assert response.status_code == 400 and "'moons' is not a unit of time" in " ".join(field_errors(response.text))


def test_every_router_is_a_choice_and_none_ticked_is_refused(app, signed_in, make_router):
    owner, b = signed_in()
    first, second = make_router(owner, name="First"), make_router(owner, name="Second")
    page = b.get("/dashboard/plans/new").text
    assert '<input checked id="sold_on-0" name="sold_on" type="radio" value="all">' in page
    assert "Every router (also routers added later)" in page and page.count('name="router_ids" type="checkbox"') == 2

    refused = b.post("/dashboard/plans/new", _form(name="None ticked", sold_on="some"))
    assert refused.status_code == 400
    assert "Tick at least one router, or choose every router." in field_errors(refused.text)

    everywhere = b.post("/dashboard/plans/new", _form(name="Everywhere", sold_on="all", router_ids=[str(first.id)]))
    assert everywhere.status_code == 302
    assert db.session.scalars(sa.select(Plan).where(Plan.name == "Everywhere")).one().routers == []

    some = b.post("/dashboard/plans/new", _form(name="Second only", sold_on="some", router_ids=[str(second.id)]))
    assert some.status_code == 302
    plan = db.session.scalars(sa.select(Plan).where(Plan.name == "Second only")).one()
    assert [r.name for r in plan.routers] == ["Second"]
    assert 'checked id="sold_on-1"' in b.get(f"/dashboard/plans/{plan.id}/edit").text
