"""GSM 03.38 (GSM-7): which texts fit one SMS part, and how to make a text fit the alphabet.

One part holds 160 GSM-7 septets; a longer text is split into 153-septet parts. One character
outside the alphabet turns the whole message into UCS-2 (70 per part). Characters of the
extension table (``^ { } \\ [ ] ~ | €``) cost two septets.
"""

from __future__ import annotations

import math
import unicodedata

BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = set("^{}\\[]~|€\f")
ONE_PART = 160
PART_WHEN_SPLIT = 153
UCS2_ONE_PART = 70
UCS2_PART_WHEN_SPLIT = 67

# Typographic characters phones and editors put in names, and their GSM-7 look-alikes.
_LOOK_ALIKES = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "\u00a0": " ",
    "·": "-",
    "•": "-",
    "×": "x",
}


def is_gsm7(text: str) -> bool:
    return all(ch in BASIC or ch in EXTENSION for ch in text)


def septets(text: str) -> int:
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def parts(text: str) -> int:
    """How many SMS parts the text takes."""
    if is_gsm7(text):
        length = septets(text)
        return 1 if length <= ONE_PART else math.ceil(length / PART_WHEN_SPLIT)
    length = len(text.encode("utf-16-be")) // 2
    return 1 if length <= UCS2_ONE_PART else math.ceil(length / UCS2_PART_WHEN_SPLIT)


def to_gsm7(text: str) -> str:
    """The text in the GSM-7 alphabet: look-alikes for typographic marks, accents dropped where the
    alphabet lacks the letter (á → a), anything else left out, so one emoji never costs 90 characters."""
    out = []
    for ch in text:
        ch = _LOOK_ALIKES.get(ch, ch)
        if all(c in BASIC or c in EXTENSION for c in ch):
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append("".join(c for c in base if c in BASIC))
    return "".join(out)
