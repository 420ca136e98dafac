"""The customer's words for facts: a purchase status, a result code, a refused push, a rate limit,
a form error, the router's refusal. English here is the gettext source; Swahili lives in
``translations/sw/LC_MESSAGES/messages.po``, so a translator never edits Python.

Words a page always shows sit in its template (``{{ _("…") }}``); the words below are chosen by
a fact, so they are keyed by it and marked with ``N_`` for extraction (``babel.cfg``). Placeholders
are ``{name}`` (``str.format``), so a translator sees what goes there. Services return facts only:
``money.customer_status.PurchaseStatus``, ``PurchaseError.reason``, ``RateLimited.limit``.
"""

from __future__ import annotations

from ..core.rate_limits import RateLimited
from ..hotspot.brands import NO_BRAND, BrandView
from ..money.customer_status import PurchaseStatus
from .language import page_translations


def N_(text: str) -> str:  # noqa: N802 (gettext's name for "mark for extraction, translate later")
    return text


_OWNER_SETUP = N_("This hotspot's M-Pesa account is not set up correctly. No money was taken. Please tell the hotspot owner.")
_NOT_DELIVERED = N_("M-Pesa could not send the payment request to your phone. Try again in a minute.")
_PENDING = N_("Waiting for M-Pesa to confirm your payment. Check your phone and enter your M-Pesa PIN.")

WORDS: dict[str, str] = {
    # form errors (the forms' validator messages are these keys)
    "err_choose_plan": N_("Choose a package."),
    "err_phone_required": N_("Enter your M-Pesa phone number."),
    "err_phone_invalid": N_("This is not a Kenyan mobile number. Enter it like 0712 345 678."),
    "err_code_required": N_("Enter your voucher code."),
    "err_bad_code": N_("We do not know this code. Check it for typing mistakes and try again, or buy a package."),
    "err_code_used_up": N_("This code has run out: its time or data is used up. Buy a new package to go online."),
    "err_code_disabled": N_("The hotspot owner has switched this code off. Ask the owner, or buy a new package."),
    "err_code_unpaid": N_(
        "The payment for this code has not arrived. If you paid, enter the M-Pesa code from your SMS "
        "under “Paid but not online?”."
    ),
    "err_no_login_link": N_(
        "Your code works. To get online, join this hotspot's Wi-Fi, open any web page "
        "and enter the code on the page that opens."
    ),
    "err_receipt_required": N_("Enter the M-Pesa confirmation code from your SMS."),
    "err_receipt_not_found": N_(
        "We could not find a payment with this code for this hotspot. "
        "Check the code in your M-Pesa SMS (10 letters and numbers)."
    ),
    "err_underpaid": N_(
        "We found your payment of KES {amount}, but it is less than the package price. "
        "Show your M-Pesa SMS to the hotspot owner."
    ),
    "err_too_little": N_(
        "We found your payment of KES {amount}, but it is less than the cheapest package here. "
        "Show your M-Pesa SMS to the hotspot owner."
    ),
    "err_used_up": N_("The package paid with this code has already been used up. Buy a new package to go online."),
    "err_expired_form": N_("This page was open for too long. Please try again."),
    # a purchase that cannot start (PurchaseError.reason)
    "no_paybill": N_("This hotspot cannot take M-Pesa payments right now. Please ask the owner."),
    "plan_gone": N_("This package is no longer on sale here. Please choose another one."),
    "prompt_open": N_(
        "Your last M-Pesa prompt may still be open on your phone: enter your PIN there. "
        "If it has gone, wait {wait}, then send it again."
    ),
    # rate limits (rl_ + RateLimited.limit.name)
    "rl_phone_minute": N_("M-Pesa allows one payment prompt per phone each minute. Wait {wait}, then try again."),
    "rl_phone_hour": N_("Too many payment prompts for this number. Wait {wait}, then try again."),
    "rl_device_hour": N_("Too many payment prompts from this device. Wait {wait}, then try again."),
    "rl_client_hour": N_("This hotspot has sent too many payment prompts. Wait {wait}, then try again."),
    "rl_code_device": N_("Too many codes tried from this device. Wait {wait}, then try again."),
    "rl_code_client": N_("Too many codes tried on this hotspot. Wait {wait}, then try again."),
    "rl_sms_resend": N_("Your code was sent by SMS a moment ago. Wait {wait} before asking again."),
    "rl_sms_resend_hour": N_("Your code was sent by SMS several times already. Wait {wait} before asking again."),
    # "send my code again" by SMS (issue 17)
    "sms_resent": N_("We sent your code again by SMS to {phone}."),
    "sms_resend_no_phone": N_("We have no phone number for this code, so we cannot send it by SMS."),
    "sms_resend_not_ready": N_("Your code is not ready yet. Wait for your payment to be confirmed."),
    "sms_resend_no_account": N_("This hotspot does not send SMS. Write your code down from this page."),
    "seconds": N_("{n} seconds"),
    "minutes": N_("{n} minutes"),
    # the router refused the login ($(error) from errors.txt; router_login.router_error_key)
    "router_refused": N_("The hotspot did not let you in"),
    "rerr_invalid": N_(
        "The hotspot does not know this code (yet). Wait a moment and try again; "
        "if it keeps failing, show your code to the hotspot owner."
    ),
    "rerr_mac": N_("This code is locked to another device. Use it on the phone or laptop you bought it on."),
    "rerr_sessions": N_("This code is already in use on another device. Log out there first, then try again."),
    "rerr_uptime": N_("The time on this code is used up. Buy a new package to go online."),
    "rerr_traffic": N_("The data on this code is used up. Buy a new package to go online."),
    "rerr_chap": N_("The login did not finish. Tap the button again."),
    "rerr_busy": N_("The hotspot is still logging you in. Wait a few seconds, then try again."),
    "rerr_radius": N_("The hotspot cannot check codes right now. Try again in a minute or tell the hotspot owner."),
    "rerr_pool": N_("The hotspot is full right now. Try again in a few minutes."),
    "rerr_not_logged_in": N_("You are not logged in. Enter your voucher code below to connect."),
    "rerr_other": N_("The hotspot could not log you in. Try again, or show this message to the hotspot owner."),
    # error pages
    "not_found": N_("We could not find that page."),
    "error_page": N_("Something went wrong. Please try again."),
    # where a purchase stands (PurchaseStatus.reason, when no result code decides)
    "status_active": N_("Your code is ready. Tap Connect to go online."),
    "status_paid": N_("Payment received. Connecting you to the internet…"),
    "status_paid_pull": N_("Payment received. Connecting… this can take up to {seconds} seconds."),
    "status_slow_router": N_(
        "Payment received — the hotspot's router is slow to answer, we keep trying. "
        "Your code is {code}: it will work as soon as the router answers."
    ),
    "call_support": N_("If it takes long, call {phone}."),
    "status_pending": N_("Check your phone and enter your M-Pesa PIN."),
    "status_slow": N_(
        "M-Pesa is slow to answer. If a prompt appears on your phone, enter your PIN; if not, try again in a minute."
    ),
    "status_expired": N_(
        "We did not hear from M-Pesa in time. If money left your account, enter the M-Pesa code from your SMS."
    ),
    "status_underpaid": N_(
        "We received KES {amount}, less than the plan price of KES {price}. "
        "Show your M-Pesa message to the hotspot owner."
    ),
}

# Daraja result codes (callback or query) → what happened and what to do next.
RESULT_WORDS: dict[str, str] = {
    "0": N_("Payment received. Your internet access is being switched on."),
    "1": N_("Your M-Pesa balance is too low for this package. Top up or choose a cheaper package, then try again."),
    "2": N_("M-Pesa did not accept this amount because it is below the minimum. Choose another package."),
    "3": N_("This amount is above your M-Pesa limit for one payment. Choose a smaller package."),
    "4": N_("You have reached your M-Pesa daily limit. Try again tomorrow or pay with another number."),
    "8": N_(
        "This hotspot cannot receive more M-Pesa payments right now. No money was taken. "
        "Please tell the hotspot owner."
    ),
    "17": N_("M-Pesa blocked a repeat payment of the same amount. Wait 2 minutes, then try again."),
    "1001": N_("Another M-Pesa request is open on your phone. Close it, wait a minute, then try again."),
    "1019": N_("The payment request expired before it was completed. Try again and enter your PIN when asked."),
    "1025": _NOT_DELIVERED,
    "9999": _NOT_DELIVERED,
    "1032": N_("You cancelled the payment. No money was taken. Try again when you are ready."),
    "1037": N_("Your phone did not answer the M-Pesa request. Keep your phone on and unlocked, then try again."),
    "2001": N_("The M-Pesa PIN was wrong. No money was taken. Try again with the correct PIN."),
    "2028": _OWNER_SETUP,
    "SFC_IC0003": _OWNER_SETUP,
    "8006": N_("Your M-Pesa PIN is locked. Call Safaricom on 100 to unlock it, then try again."),
    "4999": _PENDING,
    "500.001.1001": _PENDING,
}
UNKNOWN_RESULT = N_(
    "M-Pesa could not complete the payment. Try again in a minute. "
    "If money left your account, keep the M-Pesa SMS and show it to the hotspot owner."
)

# Why a push was refused or could not be sent (mpesa.result_codes.refusal_reason).
REFUSAL_WORDS: dict[str, str] = {
    "circuit_open": N_("M-Pesa is not responding right now. Try again in a minute."),
    "unreachable": N_("We could not reach M-Pesa. Try again in a minute."),
    "outcome_unknown": N_(
        "M-Pesa is slow to answer. If a payment request appears on your phone, enter your PIN; "
        "otherwise wait a minute, then try again."
    ),
    "config": N_("This hotspot cannot take M-Pesa payments right now. Please tell the hotspot owner."),
    "phone": N_("M-Pesa did not accept this number. Enter a Safaricom number like 0712 345 678."),
    "locked": N_("You already have an M-Pesa request open on your phone. Wait a minute, then try again."),
    "busy": N_("M-Pesa is busy right now. Try again in a minute."),
    "amount": N_("M-Pesa did not accept this amount. Choose another package."),
    "other": N_("M-Pesa could not start the payment. Try again in a minute."),
}


def gettext(text: str) -> str:
    return page_translations().ugettext(text)


def ngettext(one: str, many: str, n: int) -> str:
    return page_translations().ungettext(one, many, n)


def say(key: str, **values: object) -> str:
    """The sentence for ``key`` in the page's language; an unknown key is shown as given (it is already words)."""
    source = WORDS.get(key)
    if source is None:
        return key
    return gettext(source).format(**values) if values else gettext(source)


def result_words(code: str | None) -> str:
    return gettext(RESULT_WORDS.get(code or "", UNKNOWN_RESULT))


def refusal_words(reason: str | None) -> str:
    return gettext(REFUSAL_WORDS.get(reason or "", REFUSAL_WORDS["other"]))


def status_message(status: PurchaseStatus, brand: BrandView = NO_BRAND) -> str:
    """The customer's sentence for where a purchase stands (a slow router adds the owner's phone)."""
    if status.reason == "slow_router":
        slow = say("status_slow_router", code=status.voucher or "")
        return f"{slow} {say('call_support', phone=brand.support_phone)}" if brand.support_phone else slow
    if status.reason == "refused":
        return refusal_words(status.refusal)
    if status.reason == "underpaid":
        return say("status_underpaid", amount=status.amount, price=status.amount_expected)
    if status.result_code is not None:
        return result_words(status.result_code)
    if status.reason == "paid" and status.wait_s:
        return say("status_paid_pull", seconds=status.wait_s)  # a router that syncs by pull
    return say(f"status_{status.reason}")


def limited_message(exc: RateLimited) -> str:
    return say(f"rl_{exc.limit.name}", wait=describe_wait(exc.retry_after_s))


def describe_wait(seconds: int) -> str:
    """A waiting time in words: seconds up to two minutes, then whole minutes (rounded up)."""
    if seconds <= 120:
        return say("seconds", n=max(1, seconds))
    return say("minutes", n=-(-seconds // 60))


def describe_duration(seconds: int) -> str:
    """A plan's length: "1 hour", "3 days" ("saa 1", "siku 3")."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return _duration_unit(unit, n).format(n=n)
    return f"{seconds} s"


def _duration_unit(unit: str, n: int) -> str:
    if unit == "day":
        return ngettext("{n} day", "{n} days", n)
    if unit == "hour":
        return ngettext("{n} hour", "{n} hours", n)
    return ngettext("{n} minute", "{n} minutes", n)
