"""The customer pages' catalogs: every English sentence the captive templates, forms and word tables
use has a finished Swahili translation in the .po, and the compiled .mo the app reads is the .po's."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from wtforms import Form
from wtforms.fields.core import UnboundField

from portal.captive import forms, wording
from portal.captive.router_login import _ROUTER_ERRORS
from portal.core import rate_limits
from portal.mpesa.result_codes import REFUSAL_REASONS, known_result_codes

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "translations" / "sw" / "LC_MESSAGES"
PLACEHOLDER = re.compile(r"{\w*}")


def _extracted() -> dict[str | tuple[str, ...], str]:
    """English sources as pybabel would extract them (babel.cfg), with where each was found."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, "babel.cfg")
    found: dict[str | tuple[str, ...], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(str(ROOT), method_map, options_map):
        found.setdefault(message, f"{filename}:{lineno}")
    return found


def _po() -> dict[str | tuple[str, ...], object]:
    with (CATALOG / "messages.po").open("rb") as po:
        return {m.id: m for m in read_po(po) if m.id}


def test_every_customer_sentence_has_a_finished_swahili_translation():
    sources, catalog = _extracted(), _po()
    assert len(sources) > 80  # the extraction really read the templates and the word tables

    missing = [f"{where}: {msgid!r}" for msgid, where in sources.items() if msgid not in catalog]
    fuzzy = [repr(msgid) for msgid in sources if msgid in catalog and catalog[msgid].fuzzy]
    empty = [
        repr(msgid)
        for msgid in sources
        if msgid in catalog and not all(s.strip() for s in _forms(catalog[msgid].string))
    ]
    assert not missing, "not in the .po (run scripts/translations update, then translate):\n" + "\n".join(missing)
    assert not fuzzy, "fuzzy in the .po (check the Swahili, then drop the fuzzy flag):\n" + "\n".join(fuzzy)
    assert not empty, "untranslated in the .po:\n" + "\n".join(empty)


def test_translations_keep_every_placeholder():
    for msgid, message in _po().items():
        english = PLACEHOLDER.findall(" ".join(_forms(msgid)))
        for swahili in _forms(message.string):
            assert sorted(PLACEHOLDER.findall(swahili)) == sorted(set(english)), (msgid, swahili)


def test_every_fact_the_pages_word_has_a_sentence():
    """Keys chosen in Python are not seen by extraction: check each source of keys against the tables."""
    form_keys = {
        validator.message
        for form in vars(forms).values()
        if isinstance(form, type) and issubclass(form, Form)
        for field in vars(form).values()
        if isinstance(field, UnboundField)
        for validator in field.kwargs.get("validators", ())
        if isinstance(getattr(validator, "message", None), str)
    }
    assert {"err_phone_required", "err_choose_plan", "err_code_required", "err_receipt_required"} <= form_keys
    limits = {f"rl_{v.name}" for v in vars(rate_limits).values() if isinstance(v, rate_limits.Limit)}
    router = {key for _, key in _ROUTER_ERRORS} | {"rerr_other", "router_refused"}
    statuses = {f"status_{r}" for r in ("active", "paid", "pending", "slow", "expired", "underpaid")}
    purchase_errors = {"no_paybill", "plan_gone"}
    assert form_keys | limits | router | statuses | purchase_errors <= set(wording.WORDS)
    assert set(known_result_codes()) <= set(wording.RESULT_WORDS)
    assert set(REFUSAL_REASONS) == set(wording.REFUSAL_WORDS)


def test_the_compiled_catalog_is_the_po():
    """The app reads the .mo; scripts/translations compile makes it (scripts/test runs it first)."""
    mo_path = CATALOG / "messages.mo"
    assert mo_path.exists(), "translations are not compiled: run scripts/translations compile"
    with mo_path.open("rb") as mo:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(mo) if m.id}
    wanted = {msgid: m.string for msgid, m in _po().items() if not m.fuzzy and all(_forms(m.string))}
    assert compiled, "messages.mo holds no translations"
    stale = sorted(str(k) for k in set(compiled) ^ set(wanted) | {k for k in wanted if compiled.get(k) != wanted[k]})
    assert not stale, "messages.mo is stale (run scripts/translations compile):\n" + "\n".join(stale[:20])


def _key(value: str | list[str] | tuple[str, ...]) -> str | tuple[str, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _forms(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)
