"""The client side: keep-alive HTTP from Python threads, timed here (outside the server)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from .seed import Purchase

NAIROBI = timezone(timedelta(hours=3))


def stk_callback_body(p: Purchase, *, result_code: int = 0) -> bytes:
    """A Daraja STK callback (reference/daraja.md §4.1), with the value-less Balance item seen live."""
    callback: dict = {
        "MerchantRequestID": f"{abs(hash(p.checkout_id)) % 90000 + 10000}-{p.checkout_id[-8:]}-1",
        "CheckoutRequestID": p.checkout_id,
        "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully." if result_code == 0 else "Request cancelled by user",
    }
    if result_code == 0:
        callback["CallbackMetadata"] = {"Item": [
            {"Name": "Amount", "Value": p.amount},
            {"Name": "MpesaReceiptNumber", "Value": p.receipt},
            {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": int(datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S"))},
            {"Name": "PhoneNumber", "Value": int(p.phone)},
        ]}
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, float, float]:
        """(status, body, seconds to first byte, seconds to last byte), measured from just before sending."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                first = time.perf_counter() - started
                data = response.read()
                total = time.perf_counter() - started
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, data, first, total
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


JSON = {"Content-Type": "application/json"}


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)  # indexes of bodies answered 200

    @property
    def per_second(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


def sequential_posts(base_url: str, path: str, bodies: Sequence[bytes]) -> LoadResult:
    """One caller, one request at a time: the latency is the server's handling plus loopback."""
    client, result = Client(base_url), LoadResult()
    started = time.perf_counter()
    for body in bodies:
        status, data, _first, total = client.request("POST", path, body, JSON)
        result.sent += 1
        if status == 200 and b'"ResultCode":0' in data.replace(b" ", b""):
            result.ok += 1
            result.latencies.append(total)
        else:
            result.errors += 1
    result.elapsed_s = time.perf_counter() - started
    client.close()
    return result


def concurrent_posts(base_url: str, path: str, bodies: Sequence[bytes], *, connections: int, max_seconds: float) -> LoadResult:
    """``connections`` callers posting back to back until the bodies run out or time is up."""
    result, lock = LoadResult(), threading.Lock()
    cursor = iter(range(len(bodies)))
    deadline = time.perf_counter() + max_seconds

    def caller() -> None:
        client, local_ok, local_err, lat, done = Client(base_url), 0, 0, [], []
        while time.perf_counter() < deadline:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            try:
                status, data, _first, total = client.request("POST", path, bodies[index], JSON)
            except OSError:
                local_err += 1
                continue
            if status == 200:
                local_ok += 1
                lat.append(total)
                done.append(index)
            else:
                local_err += 1
        client.close()
        with lock:
            result.answered.extend(done)
            result.ok += local_ok
            result.errors += local_err
            result.latencies.extend(lat)

    threads = [threading.Thread(target=caller) for _ in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - started
    result.sent = result.ok + result.errors
    return result


def concurrent_gets(base_url: str, paths: Callable[[int, int], str], *, customers: int, each: int) -> LoadResult:
    """``customers`` browsers, each fetching ``each`` pages back to back; latencies are time to first byte."""
    result, lock = LoadResult(), threading.Lock()
    start_gate = threading.Barrier(customers)

    def browser(n: int) -> None:
        client, ttfb, ok, err = Client(base_url), [], 0, 0
        start_gate.wait()
        for k in range(each):
            try:
                status, _data, first, _total = client.request("GET", paths(n, k))
            except OSError:
                err += 1
                continue
            if status == 200:
                ok += 1
                ttfb.append(first)
            else:
                err += 1
        client.close()
        with lock:
            result.ok += ok
            result.errors += err
            result.latencies.extend(ttfb)

    threads = [threading.Thread(target=browser, args=(n,)) for n in range(customers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed_s = time.perf_counter() - started
    result.sent = result.ok + result.errors
    return result
