"""The customer's words as the tests look for them: the English sources, and each one's Swahili
read from the .po (the translator's file, not the compiled .mo: a catalog left uncompiled then
fails the Swahili page tests instead of passing them with English on both sides)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from babel.messages.pofile import read_po

from portal.captive import wording
from portal.mpesa.errors import DarajaError
from portal.mpesa.result_codes import meaning_of as result_meaning
from portal.mpesa.result_codes import refusal_reason

PO = Path(__file__).resolve().parents[1] / "translations" / "sw" / "LC_MESSAGES" / "messages.po"
with PO.open("rb") as _file:
    _SWAHILI = {m.id: m.string for m in read_po(_file) if m.id and isinstance(m.id, str)}

# Words the templates show as they are, under the names the tests use for them.
PAGE_WORDS = {
    "pay": "Pay with M-Pesa",
    "send_again": "Send the prompt again",
    "back": "Back to packages",
    "paid_not_online": "Paid but not online?",
    "save_code": "Save this code: you can use it to reconnect.",
    "retry_in": "You can send the prompt again in {wait}.",
}

_ENGLISH = {**wording.WORDS, **PAGE_WORDS}
TEXT = {"en": _ENGLISH, "sw": {key: _SWAHILI.get(english, "") for key, english in _ENGLISH.items()}}


@dataclass(frozen=True)
class WordedMeaning:
    """A result code's facts (portal.mpesa) with the customer's words for it (portal.captive)."""

    code: str
    status: str
    reason: str
    can_retry: bool
    text_en: str
    text_sw: str


def meaning_of(code: int | str | None) -> WordedMeaning:
    facts = result_meaning(code)
    english = wording.RESULT_WORDS.get(facts.code, wording.UNKNOWN_RESULT)
    return WordedMeaning(facts.code, facts.status, facts.reason, facts.can_retry, english, _SWAHILI.get(english, ""))


def rejection_message(exc: DarajaError) -> tuple[str, str]:
    english = wording.REFUSAL_WORDS[refusal_reason(exc)]
    return english, _SWAHILI.get(english, "")
