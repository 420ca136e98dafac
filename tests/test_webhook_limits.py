"""Unknown path tokens cannot fill the disk, and /healthz shows no job error text to the public."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import requests

from portal.jobs import record_run
from portal.models import WebhookLog, utcnow
from portal.money import webhook_log

from .test_purchase_flow import _count

SECRET = "postgresql://portal:hunter2-s3cret@db.internal/portal"


def test_posts_to_unknown_tokens_are_sampled_and_purged_after_a_day(app, shop):
    def post(n: int) -> requests.Response:
        return requests.post(f"{app.live_url}/hooks/{n:032x}/stk", json={"Body": {}}, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(2000)))

    assert {(a.status_code, a.json()["ResultCode"]) for a in answers} == {(200, 0)}
    stored = _count(WebhookLog, WebhookLog.paybill_id.is_(None))
    assert 1 <= stored <= 2 * webhook_log.UNKNOWN_TOKEN_ROWS_PER_MINUTE  # the posts may straddle a minute
    requests.post(f"{app.live_url}/hooks/{shop.paybill.webhook_token}/stk", json={"Body": {}}, timeout=10)
    assert _count(WebhookLog, WebhookLog.paybill_id == shop.paybill.id) == 1  # a genuine one still stores

    assert webhook_log.purge_old(utcnow() + timedelta(hours=25)) == stored
    assert _count(WebhookLog) == 1


def test_healthz_shows_no_job_error_text_but_an_admin_sees_it(app, signed_in):
    def broken() -> None:
        raise RuntimeError(f"could not connect to {SECRET}")

    record_run("reprocess_webhooks", broken)

    health = requests.get(f"{app.live_url}/healthz", timeout=5)
    assert health.json()["jobs"]["reprocess_webhooks"]["last_status"] == "error"
    assert "hunter2" not in health.text
    _, owner = signed_in()
    assert "hunter2" not in owner.get("/dashboard/overview").text
    _, admin = signed_in(admin=True)
    assert SECRET in admin.get("/dashboard/overview").text
