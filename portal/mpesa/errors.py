"""Typed errors for everything that can go wrong talking to Daraja.

Messages are built from Daraja's own error code and text (or a short description of a network
failure), never from request headers or bodies, so they cannot carry a token, secret or passkey.
"""

from __future__ import annotations


class DarajaError(Exception):
    """Any failure of a Daraja call. ``error_code``/``error_message`` are Daraja's, when it sent them."""

    def __init__(
        self,
        message: str = "",
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message or error_message or error_code or type(self).__name__)
        self.error_code = error_code
        self.error_message = error_message
        self.http_status = http_status
        self.request_id = request_id


class DarajaUnavailable(DarajaError):
    """Daraja could not be reached or gave no usable answer (network error, timeout, bare 5xx).

    ``outcome_unknown`` is True when the request may have reached Daraja anyway (a read timeout
    or a dropped connection after sending): an STK push in that state must not be sent again.
    """

    def __init__(
        self,
        message: str = "",
        *,
        outcome_unknown: bool = False,
        error_code: str | None = None,
        error_message: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, error_code=error_code, error_message=error_message, http_status=http_status, request_id=request_id
        )
        self.outcome_unknown = outcome_unknown


class DarajaCircuitOpen(DarajaUnavailable):
    """Too many recent failures on this host: failed fast, nothing was sent."""

    def __init__(self, message: str = "Daraja circuit breaker is open; request not sent") -> None:
        super().__init__(message, outcome_unknown=False)


class DarajaRejected(DarajaError):
    """Daraja answered and refused the request (an ``errorCode`` or a non-zero ``ResponseCode``)."""


class DarajaAuthFailed(DarajaRejected):
    """Daraja's OAuth endpoint refused the consumer key/secret."""


class InvalidPhoneNumber(ValueError):
    """The customer typed something that is not a Kenyan mobile number. The message is for logs;
    pages word it themselves, in the page's language (the captive ``err_phone_invalid``)."""

    def __init__(self, message: str = "not a Kenyan mobile number") -> None:
        super().__init__(message)
