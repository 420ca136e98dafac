"""A small circuit breaker, one per Daraja host, so an outage fails fast instead of piling up.

closed → (N consecutive unavailable failures) → open → (cool-off) → half-open: exactly one trial
request is let through; success closes the circuit, failure opens it again for another cool-off.
Daraja *refusing* a request (an errorCode) counts as success here: the host answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .errors import DarajaCircuitOpen


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cool_off_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cool_off_s = cool_off_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        """ "closed", "open" or "half_open" (cool-off over, a trial may go or is going)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._cool_off_over() else "open"

    def before_request(self) -> None:
        """Raise ``DarajaCircuitOpen`` unless a request may be sent now."""
        with self._lock:
            if self._opened_at is None:
                return
            if self._cool_off_over() and not self._trial_in_flight:
                self._trial_in_flight = True  # this caller carries the one half-open trial
                return
        raise DarajaCircuitOpen()

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False

    def release(self) -> None:
        """The permitted request ended without telling us anything about the host (e.g. a bug)."""
        with self._lock:
            self._trial_in_flight = False

    def _cool_off_over(self) -> bool:
        return self._opened_at is not None and self._clock() - self._opened_at >= self.cool_off_s
