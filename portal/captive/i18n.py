"""English and Swahili for the customer pages: from ?lang=, then the cookie, then the browser.

Every customer-visible word lives here (form errors are keys into this table too); the two
languages must have the same keys (a test checks).
"""

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
        "have_voucher": "I already have a voucher",
        "code_label": "Voucher code",
        "code_hint": "e.g. ABCD 2345 XY",
        "use_code": "Connect with this code",
        "paid_not_online": "Paid but not online?",
        "receipt_label": "M-Pesa confirmation code from your SMS",
        "receipt_hint": "e.g. SGR7XK2M9P",
        "find_payment": "Find my payment",
        "waiting_title": "Check your phone",
        "waiting_body": "Enter your M-Pesa PIN in the prompt sent to",
        "seconds_left": "seconds left",
        "refresh": "Refresh",
        "your_code": "Your voucher code",
        "save_code": "Save this code: you can use it to reconnect.",
        "connect": "Connect now",
        "connecting": "Connecting you to the internet…",
        "try_again": "Payment not completed",
        "send_again": "Send the prompt again",
        "retry_in": "You can send the prompt again in {wait}.",
        "back": "Back to packages",
        "online": "You are online",
        "ready": "Your code is ready",
        "not_found": "We could not find that page.",
        "data": "data",
        "upto": "up to",
        "unlimited": "unlimited data",
        "other_language": "Kiswahili",
        "error_page": "Something went wrong. Please try again.",
        "seconds": "{n} seconds",
        "minutes": "{n} minutes",
        # form errors
        "err_choose_plan": "Choose a package.",
        "err_phone_required": "Enter your M-Pesa phone number.",
        "err_phone_invalid": "This is not a Kenyan mobile number. Enter it like 0712 345 678.",
        "err_code_required": "Enter your voucher code.",
        "err_bad_code": "This code does not work here. Check it and try again, or buy a package.",
        "err_no_login_link": "Your code works. To get online, join this hotspot's Wi-Fi, open any web page "
        "and enter the code on the page that opens.",
        "err_receipt_required": "Enter the M-Pesa confirmation code from your SMS.",
        "err_receipt_not_found": "We could not find a payment with this code for this hotspot. "
        "Check the code in your M-Pesa SMS (10 letters and numbers).",
        "err_underpaid": "We found your payment of KES {amount}, but it is less than the package price. "
        "Show your M-Pesa SMS to the hotspot owner.",
        "err_too_little": "We found your payment of KES {amount}, but it is less than the cheapest package here. "
        "Show your M-Pesa SMS to the hotspot owner.",
        "err_used_up": "The package paid with this code has already been used up. Buy a new package to go online.",
        "err_expired_form": "This page was open for too long. Please try again.",
        # rate limits
        "rl_phone_minute": "M-Pesa allows one payment prompt per phone each minute. Wait {wait}, then try again.",
        "rl_phone_hour": "Too many payment prompts for this number. Wait {wait}, then try again.",
        "rl_device_hour": "Too many payment prompts from this device. Wait {wait}, then try again.",
        "rl_client_hour": "This hotspot has sent too many payment prompts. Wait {wait}, then try again.",
        "rl_code_device": "Too many codes tried from this device. Wait {wait}, then try again.",
        "rl_code_client": "Too many codes tried on this hotspot. Wait {wait}, then try again.",
        # the router refused the login ($(error) from errors.txt)
        "router_refused": "The hotspot did not let you in",
        "rerr_invalid": "The hotspot does not know this code (yet). Wait a moment and try again; "
        "if it keeps failing, show your code to the hotspot owner.",
        "rerr_mac": "This code is locked to another device. Use it on the phone or laptop you bought it on.",
        "rerr_sessions": "This code is already in use on another device. Log out there first, then try again.",
        "rerr_uptime": "The time on this code is used up. Buy a new package to go online.",
        "rerr_traffic": "The data on this code is used up. Buy a new package to go online.",
        "rerr_chap": "The login did not finish. Tap the button again.",
        "rerr_busy": "The hotspot is still logging you in. Wait a few seconds, then try again.",
        "rerr_radius": "The hotspot cannot check codes right now. Try again in a minute or tell the hotspot owner.",
        "rerr_pool": "The hotspot is full right now. Try again in a few minutes.",
        "rerr_not_logged_in": "You are not logged in. Enter your voucher code below to connect.",
        "rerr_other": "The hotspot could not log you in. Try again, or show this message to the hotspot owner.",
        "router_said": "The hotspot said",
    },
    "sw": {
        "title": "Nunua Wi-Fi",
        "choose_plan": "Chagua kifurushi",
        "phone_label": "Nambari ya simu ya M-Pesa",
        "phone_hint": "mfano 0712 345 678",
        "pay": "Lipa kwa M-Pesa",
        "no_plans": "Hakuna vifurushi vinavyouzwa hapa sasa hivi.",
        "have_voucher": "Nina vocha tayari",
        "code_label": "Nambari ya vocha",
        "code_hint": "mfano ABCD 2345 XY",
        "use_code": "Unganisha kwa nambari hii",
        "paid_not_online": "Umelipa lakini hujaunganishwa?",
        "receipt_label": "Nambari ya uthibitisho ya M-Pesa kutoka kwa SMS yako",
        "receipt_hint": "mfano SGR7XK2M9P",
        "find_payment": "Tafuta malipo yangu",
        "waiting_title": "Angalia simu yako",
        "waiting_body": "Weka PIN yako ya M-Pesa kwenye ujumbe uliotumwa kwa",
        "seconds_left": "sekunde zimebaki",
        "refresh": "Onyesha upya",
        "your_code": "Nambari yako ya vocha",
        "save_code": "Hifadhi nambari hii: itakusaidia kuunganisha tena.",
        "connect": "Unganisha sasa",
        "connecting": "Tunakuunganisha kwenye mtandao…",
        "try_again": "Malipo hayakukamilika",
        "send_again": "Tuma ombi tena",
        "retry_in": "Unaweza kutuma ombi tena baada ya {wait}.",
        "back": "Rudi kwa vifurushi",
        "online": "Uko mtandaoni",
        "ready": "Nambari yako iko tayari",
        "not_found": "Hatukupata ukurasa huo.",
        "data": "data",
        "upto": "hadi",
        "unlimited": "data bila kikomo",
        "other_language": "English",
        "error_page": "Kuna tatizo. Tafadhali jaribu tena.",
        "seconds": "sekunde {n}",
        "minutes": "dakika {n}",
        "err_choose_plan": "Chagua kifurushi.",
        "err_phone_required": "Weka nambari yako ya simu ya M-Pesa.",
        "err_phone_invalid": "Hii si nambari ya simu ya Kenya. Iandike kama 0712 345 678.",
        "err_code_required": "Weka nambari yako ya vocha.",
        "err_bad_code": "Nambari hii haifanyi kazi hapa. Iangalie na ujaribu tena, au nunua kifurushi.",
        "err_no_login_link": "Nambari yako inafanya kazi. Ili kuingia mtandaoni, jiunge na Wi-Fi ya hotspot hii, "
        "fungua ukurasa wowote na uweke nambari kwenye ukurasa utakaofunguka.",
        "err_receipt_required": "Weka nambari ya uthibitisho ya M-Pesa kutoka kwa SMS yako.",
        "err_receipt_not_found": "Hatukupata malipo yenye nambari hii kwa hotspot hii. "
        "Angalia nambari kwenye SMS yako ya M-Pesa (herufi na tarakimu 10).",
        "err_underpaid": "Tumepata malipo yako ya KES {amount}, lakini ni chini ya bei ya kifurushi. "
        "Onyesha SMS yako ya M-Pesa kwa mwenye hotspot.",
        "err_too_little": "Tumepata malipo yako ya KES {amount}, lakini ni chini ya kifurushi cha bei ya chini hapa. "
        "Onyesha SMS yako ya M-Pesa kwa mwenye hotspot.",
        "err_used_up": "Kifurushi kilicholipiwa kwa nambari hii kimeshatumika. Nunua kifurushi kipya ili uingie mtandaoni.",
        "err_expired_form": "Ukurasa huu ulikaa wazi muda mrefu. Tafadhali jaribu tena.",
        "rl_phone_minute": "M-Pesa inaruhusu ombi moja la malipo kwa simu kila dakika. Subiri {wait}, kisha jaribu tena.",
        "rl_phone_hour": "Maombi mengi mno ya malipo kwa nambari hii. Subiri {wait}, kisha jaribu tena.",
        "rl_device_hour": "Maombi mengi mno ya malipo kutoka kwa kifaa hiki. Subiri {wait}, kisha jaribu tena.",
        "rl_client_hour": "Hotspot hii imetuma maombi mengi mno ya malipo. Subiri {wait}, kisha jaribu tena.",
        "rl_code_device": "Nambari nyingi mno zimejaribiwa kutoka kwa kifaa hiki. Subiri {wait}, kisha jaribu tena.",
        "rl_code_client": "Nambari nyingi mno zimejaribiwa kwenye hotspot hii. Subiri {wait}, kisha jaribu tena.",
        "router_refused": "Hotspot haikukuruhusu kuingia",
        "rerr_invalid": "Hotspot haijaitambua nambari hii (bado). Subiri kidogo na ujaribu tena; "
        "ikiendelea kukataa, onyesha nambari yako kwa mwenye hotspot.",
        "rerr_mac": "Nambari hii imefungwa kwa kifaa kingine. Itumie kwenye simu au kompyuta uliyoinunulia.",
        "rerr_sessions": "Nambari hii inatumika kwenye kifaa kingine. Toka huko kwanza, kisha jaribu tena.",
        "rerr_uptime": "Muda wa nambari hii umekwisha. Nunua kifurushi kipya ili uingie mtandaoni.",
        "rerr_traffic": "Data ya nambari hii imekwisha. Nunua kifurushi kipya ili uingie mtandaoni.",
        "rerr_chap": "Kuingia hakukukamilika. Bonyeza kitufe tena.",
        "rerr_busy": "Hotspot bado inakuingiza. Subiri sekunde chache, kisha jaribu tena.",
        "rerr_radius": "Hotspot haiwezi kukagua nambari sasa hivi. Jaribu tena baada ya dakika moja "
        "au mjulishe mwenye hotspot.",
        "rerr_pool": "Hotspot imejaa sasa hivi. Jaribu tena baada ya dakika chache.",
        "rerr_not_logged_in": "Hujaingia. Weka nambari yako ya vocha hapa chini ili kuunganisha.",
        "rerr_other": "Hotspot haikuweza kukuingiza. Jaribu tena, au onyesha ujumbe huu kwa mwenye hotspot.",
        "router_said": "Hotspot ilisema",
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


def describe_wait(seconds: int, lang: str) -> str:
    """A waiting time in words: seconds up to two minutes, then whole minutes (rounded up)."""
    t = texts(lang)
    if seconds <= 120:
        return t["seconds"].format(n=max(1, seconds))
    return t["minutes"].format(n=-(-seconds // 60))
