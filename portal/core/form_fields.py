"""Form fields shared by the customer pages and the dashboard."""

from __future__ import annotations

from typing import Any

from wtforms import IntegerField


class WholeNumberField(IntegerField):
    """An IntegerField that refuses absurdly long numbers up front.

    WTForms' NumberRange compares through float, which overflows past ~309 digits (a server
    error, found by fuzzing), and a huge id would overflow the database's integer columns.
    """

    MAX_DIGITS = 15

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and len(str(valuelist[0]).strip().lstrip("+-")) > self.MAX_DIGITS:
            self.data = None
            raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)
