"""The sandbox SMS gateway the SMS and alert tests send through, and the settings pointing at it."""

from __future__ import annotations

from typing import Any

import pytest

from portal.sandbox.sms import SANDBOX_API_KEY, SandboxSmsGateway


@pytest.fixture
def sms_gateway():  # type: ignore[no-untyped-def]
    with SandboxSmsGateway(report_delay_s=0.05) as gateway:
        yield gateway


def sms_settings(gateway: SandboxSmsGateway, **extra: Any) -> dict[str, Any]:
    """app_overrides for a test module that sends through ``gateway`` with the platform's account."""
    return {
        "PORTAL_SMS_USERNAME": "sandbox",
        "PORTAL_SMS_API_KEY": SANDBOX_API_KEY,
        "PORTAL_SMS_BASE_URL": gateway.base_url,
        "PORTAL_SMS_RATE_PER_S": 200.0,
        **extra,
    }
