"""Sending a payout or a refund by B2C, at most once, and recording what Daraja says about it.

A transfer (a ``Payout`` or a ``Refund`` row) moves ``approved → sent`` by a conditional UPDATE
that also gives it a fresh OriginatorConversationID, committed *before* the request goes out: two
workers (or two admins) cannot both send it, and a crash after sending leaves it "sent" to be
resolved by Transaction Status, never re-sent. It leaves ``sent`` only on a definitive answer:

* a Result with ResultCode 0, or Transaction Status "Completed": ``completed``, its ledger entry
  posted in the same transaction (unique per source and kind, so a late or duplicate Result
  changes nothing);
* a Result with another code, or a final non-Completed status: ``failed`` with the reason in
  words; a retry (``approve_retry``) gets a new ID;
* a refusal of the request itself (nothing was sent): ``failed``, retryable.

A timeout (ours, or Daraja's QueueTimeOut) is not a failure: the transfer stays ``sent`` with
``outcome_unknown`` and ``query_unknown_transfers`` asks Transaction Status, whose answer comes to
the paybill's secret-token webhook path like the Result.

A request M-Pesa lost keeps a transfer ``sent`` for ever (Transaction Status says 2032, "no such
transaction"), and with it the owner's next payout. Only an admin moves it on: after
PORTAL_B2C_NOT_FOUND_AFTER_S with M-Pesa's latest word "no record", ``declare_not_sent`` fails it
(retryable, audited). Should the lost request turn up paid after all, its Result still finds the
transfer, or, if a retry already went out under a new ID, is reported as a possible double payment.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app

from ..core.database import storable
from ..core.extensions import db
from ..models import OwnerMoneySettings, Paybill, PaybillB2C, Payout, Refund, utcnow
from ..mpesa import b2c
from ..mpesa.errors import DarajaError, DarajaRejected, DarajaUnavailable
from ..owners import audit
from ..owners.paybills import prepare_daraja_call
from . import ledger

log = logging.getLogger(__name__)

Transfer = Payout | Refund
PREFIX = {Payout: "PO", Refund: "RF"}
STATUS_QUERY_BACKOFF_S = (30, 120, 600, 1800, 3600)
FINAL_FAILED_STATUSES = ("cancelled", "declined", "expired", "failed")


class B2CNotConfigured(RuntimeError):
    """The paybill has no B2C credentials or no certificate: say what to set."""


# --- credentials --------------------------------------------------------------------------------


def set_b2c_credentials(paybill: Paybill, *, initiator_name: str, initiator_password: str,
                        certificate_path: str | None = None, actor: Any = "cli") -> PaybillB2C:
    """Give a paybill B2C credentials (both encrypted at rest). The caller commits."""
    if not initiator_name.strip() or not initiator_password:
        raise ValueError("the initiator name and password are both needed")
    if certificate_path:
        _read_certificate(certificate_path)  # refuse a path that is no certificate now, not at the first payout
    creds = db.session.get(PaybillB2C, paybill.id) or PaybillB2C(paybill_id=paybill.id)
    creds.initiator_name = initiator_name.strip()
    creds.initiator_password = initiator_password
    creds.certificate_path = certificate_path or None
    db.session.add(creds)
    audit.record("paybill.b2c_credentials_set", actor=actor, owner_id=paybill.owner_id, object_type="paybill",
                 object_id=paybill.id, detail="initiator name and password changed (values not logged)")
    return creds


def has_b2c(paybill_id: int | None) -> bool:
    return paybill_id is not None and db.session.get(PaybillB2C, paybill_id) is not None


def platform_b2c_paybill() -> Paybill | None:
    """The platform's paybill that pays owners out: the first active one with B2C credentials."""
    return db.session.scalars(
        sa.select(Paybill).join(PaybillB2C, PaybillB2C.paybill_id == Paybill.id)
        .where(Paybill.owner_id.is_(None), Paybill.status == "active").order_by(Paybill.id)
    ).first()


def certificate_path_for(paybill: Paybill, creds: PaybillB2C) -> str:
    if creds.certificate_path:
        return creds.certificate_path
    setting = "PORTAL_B2C_CERT_PRODUCTION" if paybill.environment == "production" else "PORTAL_B2C_CERT_SANDBOX"
    path = current_app.config[setting]
    if not path:
        raise B2CNotConfigured(f"set {setting} to Safaricom's M-Pesa certificate for the {paybill.environment} "
                               f"environment, or give the paybill one (flask paybill b2c --certificate)")
    return path


def _read_certificate(path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise B2CNotConfigured(f"cannot read the M-Pesa certificate {path}: {exc.strerror}") from exc
    if b"<html" in data[:512].lower():
        raise B2CNotConfigured(f"{path} is an HTML page, not Safaricom's certificate")
    return data


def b2c_urls(paybill: Paybill) -> dict[str, str]:
    base = f"{current_app.config['PORTAL_BASE_URL']}/hooks/{paybill.webhook_token}/b2c"
    return {"result": f"{base}/result", "timeout": f"{base}/timeout",
            "status": f"{base}/status", "status_timeout": f"{base}/status-timeout"}


@dataclass(frozen=True)
class _B2CCall:
    daraja: Any
    initiator: b2c.B2CInitiator
    urls: dict[str, str]


def _prepare(paybill_id: int) -> _B2CCall:
    paybill = db.session.get(Paybill, paybill_id)
    creds = db.session.get(PaybillB2C, paybill_id) if paybill else None
    if paybill is None or creds is None:
        raise B2CNotConfigured("this paybill has no B2C credentials (flask paybill b2c)")
    cert = _read_certificate(certificate_path_for(paybill, creds))
    try:
        credential = b2c.security_credential(creds.initiator_password, cert)
    except b2c.CertificateError as exc:
        raise B2CNotConfigured(str(exc)) from exc
    initiator = b2c.B2CInitiator(paybill.number, creds.initiator_name, credential)
    urls = b2c_urls(paybill)
    return _B2CCall(prepare_daraja_call(paybill), initiator, urls)  # prepare_daraja_call commits


# --- sending ------------------------------------------------------------------------------------


def new_originator_id(model: type, transfer_id: int, attempt: int) -> str:
    return f"{PREFIX[model]}-{transfer_id}-{attempt}-{secrets.token_hex(4)}"


def send_transfer(model: type, transfer_id: int, *, now: datetime | None = None,
                  pace: Callable[[], None] | None = None) -> str:
    """Send one approved transfer. Returns what happened: sent, unknown, failed, not_due, retry_later.

    Two callers at once: one claims it and sends, the other gets "not_due". Commits. ``pace`` is
    called just before the request goes out (a batch's rate limit).
    """
    now = now or utcnow()
    table = model.__table__
    row = db.session.execute(sa.select(table.c.attempt, table.c.paybill_id).where(
        table.c.id == transfer_id, table.c.state == "approved")).first()
    if row is None:
        db.session.commit()
        return "not_due"
    attempt, paybill_id = row[0] + 1, row[1]
    originator_id = new_originator_id(model, transfer_id, attempt)
    claimed = db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.state == "approved", table.c.attempt == row[0])
        .values(state="sent", attempt=attempt, originator_conversation_id=originator_id, sent_at=now,
                outcome_unknown=False, conversation_id=None, result_code=None, result_desc=None,
                failure_reason=None, status_queries=0, next_status_query_at=None)
    ).rowcount
    db.session.commit()
    if claimed != 1:
        return "not_due"
    transfer = db.session.get(model, transfer_id)
    phone, amount, remarks = transfer.phone or "", transfer.amount, _remarks(transfer)
    try:
        # Plain values only from here: touching an expired row would open a transaction (on SQLite
        # a write lock) that the token store's own connection would then wait on.
        call = _prepare(paybill_id)
        if pace is not None:
            pace()
        accepted = b2c.b2c_payment(
            call.daraja.client, call.daraja.account, call.daraja.tokens, call.initiator,
            originator_conversation_id=originator_id, phone=phone, amount=amount,
            remarks=remarks, result_url=call.urls["result"], timeout_url=call.urls["timeout"],
        )
    except b2c.B2CDuplicate:
        return _mark_unknown(model, transfer_id, originator_id, now, "Daraja already has this request")
    except DarajaUnavailable as exc:
        if exc.outcome_unknown:
            return _mark_unknown(model, transfer_id, originator_id, now, f"no clear answer: {exc}")
        return _unclaim(model, transfer_id, originator_id, f"not sent: {exc}")
    except DarajaRejected as exc:
        return _fail(model, transfer_id, originator_id, f"Daraja refused the request: {exc}", retryable=True,
                     code=exc.error_code)
    except (B2CNotConfigured, DarajaError) as exc:
        return _unclaim(model, transfer_id, originator_id, f"not sent: {exc}", fail=True)
    except ValueError as exc:  # an amount or phone M-Pesa would refuse
        return _fail(model, transfer_id, originator_id, str(exc), retryable=False)
    db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.originator_conversation_id == originator_id)
        .values(conversation_id=storable(accepted.conversation_id, 64),
                next_status_query_at=now + timedelta(seconds=current_app.config["PORTAL_B2C_RESULT_WAIT_S"]))
    )
    db.session.commit()
    return "sent"


def _remarks(transfer: Transfer) -> str:
    if isinstance(transfer, Refund):
        return f"Refund of payment {transfer.payment_id}"
    return "Wi-Fi sales payout" if transfer.kind == "payout" else "Payout phone check"


def _mark_unknown(model: type, transfer_id: int, originator_id: str, now: datetime, why: str) -> str:
    table = model.__table__
    db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.originator_conversation_id == originator_id,
                               table.c.state == "sent")
        .values(outcome_unknown=True, result_desc=storable(why, 300), next_status_query_at=now)
    )
    db.session.commit()
    log.warning("b2c %s outcome unknown id=%s: %s", PREFIX[model], originator_id, why)
    return "unknown"


def _unclaim(model: type, transfer_id: int, originator_id: str, why: str, *, fail: bool = False) -> str:
    """Provably never sent (no connection, circuit open, not configured): back to approved, so the
    next run sends it (with a new ID: this one never reached Daraja)."""
    if fail:
        return _fail(model, transfer_id, originator_id, why, retryable=True)
    table = model.__table__
    db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.originator_conversation_id == originator_id,
                               table.c.state == "sent")
        .values(state="approved", result_desc=storable(why, 300))
    )
    db.session.commit()
    return "retry_later"


def _fail(model: type, transfer_id: int, originator_id: str, reason: str, *, retryable: bool,
          code: str | None = None, states: tuple[str, ...] = ("sent",)) -> str:
    table = model.__table__
    changed = db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.originator_conversation_id == originator_id,
                               table.c.state.in_(states))
        .values(state="failed", failure_reason=storable(reason, 300), is_retryable=retryable, outcome_unknown=False,
                result_code=storable(code, 32) if code else table.c.result_code, completed_at=utcnow())
    ).rowcount
    db.session.commit()
    if changed:
        log.warning("b2c %s failed id=%s retryable=%s: %s", PREFIX[model], originator_id, retryable, reason)
    return "failed" if changed else "duplicate"


def approve_retry(model: type, transfer_id: int, *, actor: Any) -> bool:
    """A failed, retryable transfer back to approved (it gets a new ID when sent). Commits."""
    table = model.__table__
    moved = db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.state == "failed", table.c.is_retryable.is_(True))
        .values(state="approved")
    ).rowcount
    if moved:
        owner_id = db.session.scalar(sa.select(table.c.owner_id).where(table.c.id == transfer_id))
        audit.record(f"{table.name[:-1]}.retry", actor=actor, owner_id=owner_id, object_type=table.name[:-1],
                     object_id=transfer_id)
    db.session.commit()
    return moved == 1


# --- answers from Daraja --------------------------------------------------------------------------


def _find(originator_id: str | None) -> tuple[type, Transfer] | None:
    if not originator_id:
        return None
    for model in (Payout, Refund):
        found = db.session.scalars(sa.select(model).where(model.originator_conversation_id == originator_id)).first()
        if found is not None:
            return model, found
    return None


_ORIGINATOR_ID = re.compile(r"(PO|RF)-(\d{1,12})-(\d{1,6})-[0-9a-f]{8}")


def _earlier_attempt(originator_id: str | None) -> tuple[type, Transfer] | None:
    """The transfer an ID of ours was an earlier attempt of (a retry replaced it), if any."""
    match = _ORIGINATOR_ID.fullmatch(originator_id or "")
    if match is None:
        return None
    model = Payout if match.group(1) == "PO" else Refund
    transfer = db.session.get(model, int(match.group(2)))
    if transfer is None or int(match.group(3)) >= transfer.attempt:
        return None
    return model, transfer


def _earlier_attempt_paid(originator_id: str | None, receipt: str | None, paybill_id: int | None) -> str:
    """A success for an ID a retry replaced: M-Pesa paid a request we had given up on, so the
    recipient may have been paid twice. Nothing is posted (the ledger holds one entry per
    transfer); it is logged as an error and audited for an admin to recover or adjust."""
    found = _earlier_attempt(originator_id)
    if found is None:
        return "ignored"
    model, transfer = found
    if paybill_id is not None and transfer.paybill_id != paybill_id:
        return "rejected"
    kind = model.__tablename__[:-1]
    audit.record(f"{kind}.earlier_attempt_paid", actor="m-pesa", owner_id=transfer.owner_id, object_type=kind,
                 object_id=transfer.id, detail=f"earlier attempt {originator_id} paid, receipt {receipt}, "
                 f"KES {transfer.amount}; the transfer is {transfer.state}: check for a double payment")
    db.session.commit()
    log.error("b2c %s %s: an earlier attempt %s was paid after all (receipt %s, KES %s): check for a double payment",
              PREFIX[model], transfer.id, originator_id, receipt, transfer.amount)
    return "earlier_attempt_paid"


def record_result(result: b2c.B2CResult, paybill_id: int | None) -> str:
    """A B2C Result callback, exactly once. Returns completed, failed, duplicate, ignored or rejected."""
    found = _find(result.originator_conversation_id)
    receipt = storable(str(result.parameter("TransactionReceipt") or result.transaction_id or ""), 20) or None
    if found is None:
        if not result.is_success:
            return "ignored"
        return _earlier_attempt_paid(result.originator_conversation_id, receipt, paybill_id)
    model, transfer = found
    if paybill_id is not None and transfer.paybill_id != paybill_id:
        return "rejected"
    if result.is_success:
        return _complete(model, transfer, receipt, from_states=("sent", "failed"))
    words, retryable = b2c.b2c_failure(result.result_code, result.result_desc)
    return _fail(model, transfer.id, transfer.originator_conversation_id or "", words, retryable=retryable,
                 code=result.result_code)


def record_timeout(originator_id: str | None, paybill_id: int | None) -> str:
    """Daraja's QueueTimeOut: not a failure. Ask Transaction Status at once."""
    found = _find(originator_id)
    if found is None:
        return "ignored"
    model, transfer = found
    if paybill_id is not None and transfer.paybill_id != paybill_id:
        return "rejected"
    if transfer.state != "sent":
        return "duplicate"
    return _mark_unknown(model, transfer.id, transfer.originator_conversation_id or "", utcnow(),
                         "Daraja timed out while queueing it")


def record_status_result(result: b2c.B2CResult, paybill_id: int | None) -> str:
    """A Transaction Status answer: Completed completes; a final other status fails; else ask again later."""
    found = _find(result.parameter("OriginatorConversationID", "Originator Conversation ID"))
    if found is None and result.conversation_id:
        for model in (Payout, Refund):
            row = db.session.scalars(sa.select(model).where(
                model.status_query_conversation_id == result.conversation_id)).first()
            if row is not None:
                found = (model, row)
                break
    if found is None:
        return "ignored"
    model, transfer = found
    if paybill_id is not None and transfer.paybill_id != paybill_id:
        return "rejected"
    status = str(result.parameter("TransactionStatus", "Transaction Status") or "").strip().lower()
    if result.is_success and status == "completed":
        receipt = result.parameter("ReceiptNo", "Receipt No")
        return _complete(model, transfer, str(receipt or "")[:20] or None, from_states=("sent", "failed"))
    if result.is_success and status in FINAL_FAILED_STATUSES:
        return _fail(model, transfer.id, transfer.originator_conversation_id or "",
                     f"M-Pesa says the payment was {status}", retryable=True)
    if result.result_code == NOT_FOUND_CODE:
        return _note_not_found(model, transfer)
    if transfer.state == "sent" and transfer.result_code == NOT_FOUND_CODE:  # M-Pesa knows it now
        _set_status_word(model, transfer, None, "M-Pesa has a record of it; still in progress")
    return "pending"  # still in progress: the next query is already booked


NOT_FOUND_CODE = "2032"  # Transaction Status: no such transaction


def _note_not_found(model: type, transfer: Transfer) -> str:
    """M-Pesa's latest word on a sent transfer: no record of it (it may yet appear: keep asking)."""
    if transfer.state != "sent":
        return "duplicate"
    _set_status_word(model, transfer, NOT_FOUND_CODE, f"M-Pesa had no record of it at {utcnow():%Y-%m-%d %H:%M} UTC")
    return "not_found"


def _set_status_word(model: type, transfer: Transfer, code: str | None, words: str) -> None:
    table = model.__table__
    db.session.execute(
        sa.update(table).where(table.c.id == transfer.id, table.c.state == "sent",
                               table.c.originator_conversation_id == transfer.originator_conversation_id)
        .values(result_code=code, result_desc=storable(words, 300))
    )
    db.session.commit()


def not_sent_declarable(transfer: Transfer, *, now: datetime | None = None) -> str | None:
    """Why an admin may not (yet) declare this transfer not sent; None when they may."""
    if transfer.state != "sent":
        return "only a sent transfer can be declared not sent"
    if transfer.result_code != NOT_FOUND_CODE:
        return "M-Pesa's latest answer was not 'no record of it': ask M-Pesa again first"
    wait = _not_found_wait()
    if transfer.sent_at is None or (now or utcnow()) - transfer.sent_at < wait:
        return f"sent less than {_duration(wait)} ago: M-Pesa may still find it"
    return None


def _not_found_wait() -> timedelta:
    return timedelta(seconds=current_app.config["PORTAL_B2C_NOT_FOUND_AFTER_S"])


def _duration(wait: timedelta) -> str:
    seconds = int(wait.total_seconds())
    return f"{seconds // 3600} hours" if seconds >= 7200 else f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} s"


def declare_not_sent(model: type, transfer_id: int, *, actor: Any, note: str = "") -> str | None:
    """An admin's "M-Pesa never got it": the transfer fails (retryable, so it can go again under a
    new ID). Refused (returns why) unless M-Pesa's latest answer was "no record" and it was sent
    PORTAL_B2C_NOT_FOUND_AFTER_S ago. Commits."""
    now = utcnow()
    transfer = db.session.get(model, transfer_id)
    refusal = "no such transfer" if transfer is None else not_sent_declarable(transfer, now=now)
    if refusal:
        db.session.commit()
        return refusal
    table = model.__table__
    reason = f"Declared not sent by {getattr(actor, 'email', actor)}: M-Pesa had no record of it"
    if note.strip():
        reason += f" ({note.strip()})"
    moved = db.session.execute(
        sa.update(table).where(table.c.id == transfer_id, table.c.state == "sent",
                               table.c.result_code == NOT_FOUND_CODE, table.c.sent_at <= now - _not_found_wait(),
                               table.c.originator_conversation_id == transfer.originator_conversation_id)
        .values(state="failed", failure_reason=storable(reason, 300), is_retryable=True, outcome_unknown=False,
                next_status_query_at=None, completed_at=now)
    ).rowcount
    if not moved:
        db.session.rollback()
        return "it changed meanwhile: look again"
    kind = table.name[:-1]
    audit.record(f"{kind}.declared_not_sent", actor=actor, owner_id=transfer.owner_id, object_type=kind,
                 object_id=transfer_id, detail=storable(f"{transfer.originator_conversation_id}, KES {transfer.amount}, "
                                                        f"{transfer.status_queries} status queries; {note.strip()}", 500))
    db.session.commit()
    log.warning("b2c %s %s declared not sent by %s after %s status queries", PREFIX[model], transfer_id,
                getattr(actor, "email", actor), transfer.status_queries)
    return None


def _complete(model: type, transfer: Transfer, receipt: str | None, *, from_states: tuple[str, ...]) -> str:
    """Completed and its ledger entry, in one transaction; a second delivery moves nothing."""
    table = model.__table__
    now = utcnow()
    moved = db.session.execute(
        sa.update(table).where(table.c.id == transfer.id, table.c.state.in_(from_states),
                               table.c.originator_conversation_id == transfer.originator_conversation_id)
        .values(state="completed", receipt=receipt, completed_at=now, outcome_unknown=False,
                next_status_query_at=None, failure_reason=None, result_code="0")
    ).rowcount
    if not moved:
        db.session.rollback()
        return "duplicate"
    _post_completed(model, transfer, receipt, now)
    db.session.commit()
    log.info("b2c %s completed id=%s receipt=%s amount=%s", PREFIX[model], transfer.originator_conversation_id,
             receipt, transfer.amount)
    return "completed"


def _post_completed(model: type, transfer: Transfer, receipt: str | None, now: datetime) -> None:
    if model is Payout:
        if transfer.kind == "test":
            _confirm_payout_phone(transfer, now)
            return  # the check's few shillings are the platform's cost, not the owner's
        ledger.post_entry(owner_id=transfer.owner_id, kind="payout", amount=-transfer.amount, source_type="payout",
                          source_id=transfer.id, receipt=receipt)
        return
    paybill_owner = db.session.scalar(sa.select(Paybill.owner_id).where(Paybill.id == transfer.paybill_id))
    if transfer.owner_id is not None and paybill_owner is None:  # the platform held this money for the owner
        ledger.post_entry(owner_id=transfer.owner_id, kind="refund", amount=-transfer.amount, source_type="refund",
                          source_id=transfer.id, receipt=receipt)


def _confirm_payout_phone(payout: Payout, now: datetime) -> None:
    db.session.execute(
        sa.update(OwnerMoneySettings)
        .where(OwnerMoneySettings.owner_id == payout.owner_id, OwnerMoneySettings.payout_phone == payout.phone)
        .values(payout_phone_confirmed_at=now)
    )


# --- resolving unknown outcomes -------------------------------------------------------------------


def query_unknown_transfers(limit: int = 100, *, now: datetime | None = None) -> dict[str, int]:
    """Ask Transaction Status about sent transfers whose Result is overdue or whose outcome is
    unknown. Each query is booked (count and next time) before it is sent, so two workers do not
    ask twice at once; asking twice would be harmless anyway (a query moves no money)."""
    now = now or utcnow()
    counts = {"asked": 0, "errors": 0}
    for model in (Payout, Refund):
        rows = db.session.execute(
            sa.select(model.id, model.status_queries, model.originator_conversation_id, model.paybill_id)
            .where(model.state == "sent", model.next_status_query_at.is_not(None), model.next_status_query_at <= now)
            .order_by(model.next_status_query_at).limit(limit)
        ).all()
        db.session.commit()
        for transfer_id, queries, originator_id, paybill_id in rows:
            wait = STATUS_QUERY_BACKOFF_S[min(queries, len(STATUS_QUERY_BACKOFF_S) - 1)]
            booked = db.session.execute(
                sa.update(model).where(model.id == transfer_id, model.status_queries == queries, model.state == "sent")
                .values(status_queries=queries + 1, next_status_query_at=now + timedelta(seconds=wait))
            ).rowcount
            db.session.commit()
            if not booked:
                continue
            try:
                ask_status(model, transfer_id, originator_id, paybill_id)
                counts["asked"] += 1
            except (DarajaError, B2CNotConfigured) as exc:
                counts["errors"] += 1
                log.warning("transaction status for %s failed: %s", originator_id, exc)
    return counts


def ask_status(model: type, transfer_id: int, originator_id: str, paybill_id: int) -> None:
    call = _prepare(paybill_id)
    accepted = b2c.transaction_status(
        call.daraja.client, call.daraja.account, call.daraja.tokens, call.initiator,
        originator_conversation_id=originator_id, result_url=call.urls["status"],
        timeout_url=call.urls["status_timeout"],
    )
    db.session.execute(sa.update(model).where(model.id == transfer_id)
                       .values(status_query_conversation_id=storable(accepted.conversation_id, 64)))
    db.session.commit()


def warm_up_token(paybill_id: int | None) -> None:
    """Fetch the paybill's Daraja token now, if it has none fresh: a batch's first sends would
    otherwise all wait on one fetch and then start at once, over Daraja's rate."""
    if paybill_id is None:
        return
    try:
        call = _prepare(paybill_id)
        call.daraja.client.access_token(call.daraja.account, call.daraja.tokens)
    except (DarajaError, B2CNotConfigured) as exc:
        log.warning("b2c token warm-up for paybill %s failed: %s", paybill_id, exc)  # each send reports its own


def query_now(model: type, transfer_id: int) -> bool:
    """An admin's "ask M-Pesa now" for a sent transfer."""
    transfer = db.session.get(model, transfer_id)
    if transfer is None or transfer.state != "sent" or not transfer.originator_conversation_id:
        return False
    ask_status(model, transfer.id, transfer.originator_conversation_id, transfer.paybill_id)
    return True
