"""English and Swahili for the customer pages: from ?lang=, then the cookie, then the browser."""

from __future__ import annotations

from flask import Request

LANGUAGES = ("en", "sw")
COOKIE = "lang"

TEXT = {
    "en": {
        "title": "Buy Wi-Fi",
        "choose_plan": "Choose a package",
        "phone_label": "M-Pesa phone number",
        "phone_hint": "e.g. 0712 345 678",
        "pay": "Pay with M-Pesa",
        "no_plans": "No packages are on sale here right now.",
        "have_voucher": "Already have a voucher?",
        "waiting_title": "Check your phone",
        "waiting_body": "Enter your M-Pesa PIN in the prompt sent to",
        "seconds_left": "seconds left",
        "refresh": "Refresh",
        "your_code": "Your voucher code",
        "save_code": "Save this code: you can use it to reconnect.",
        "connect": "Connect now",
        "try_again": "Try again",
        "back": "Back to packages",
        "online": "You are online",
        "not_found": "We could not find that purchase.",
        "data": "data",
        "speed": "speed",
        "unlimited": "unlimited data",
        "other_language": "Kiswahili",
        "error_page": "Something went wrong. Please try again.",
    },
    "sw": {
        "title": "Nunua Wi-Fi",
        "choose_plan": "Chagua kifurushi",
        "phone_label": "Nambari ya simu ya M-Pesa",
        "phone_hint": "mfano 0712 345 678",
        "pay": "Lipa kwa M-Pesa",
        "no_plans": "Hakuna vifurushi vinavyouzwa hapa sasa hivi.",
        "have_voucher": "Una vocha tayari?",
        "waiting_title": "Angalia simu yako",
        "waiting_body": "Weka PIN yako ya M-Pesa kwenye ujumbe uliotumwa kwa",
        "seconds_left": "sekunde zimebaki",
        "refresh": "Onyesha upya",
        "your_code": "Nambari yako ya vocha",
        "save_code": "Hifadhi nambari hii: itakusaidia kuunganisha tena.",
        "connect": "Unganisha sasa",
        "try_again": "Jaribu tena",
        "back": "Rudi kwa vifurushi",
        "online": "Uko mtandaoni",
        "not_found": "Hatukupata ununuzi huo.",
        "data": "data",
        "speed": "kasi",
        "unlimited": "data bila kikomo",
        "other_language": "English",
        "error_page": "Kuna tatizo. Tafadhali jaribu tena.",
    },
}


def choose_language(request: Request) -> str:
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        return asked
    saved = request.cookies.get(COOKIE)
    if saved in LANGUAGES:
        return saved
    best = request.accept_languages.best_match(LANGUAGES, default="en")
    return best or "en"


def texts(lang: str) -> dict[str, str]:
    return TEXT.get(lang, TEXT["en"])
