"""Particle's API limits, each answered with a 429 and Retry-After (particle-cloud.md,
"API rate limits", "SSE limits"):

- requests: 10,000 per 5 minutes per client address (``api.requests_per_5_min``);
- logins (POST /oauth/token and the legacy password routes): 100 per 5 minutes per
  address, and an account is locked for 30 minutes after 10 failed passwords in a row
  (``api.logins_per_5_min``, ``api.login_failures_before_lockout``, ``api.login_lockout_s``);
- event streams: 100 opened per 5 minutes and 100 open at once per address
  (``api.stream_opens_per_5_min``, ``api.streams_per_address``).

Each is a token bucket (rates.py) that refills evenly, so a client that keeps to the
average never waits; 0 turns a limit off. The counts live in this process: a cluster of
nodes behind a balancer allows each node's share.

A 429 never says "access token" and is never a 401: particle-cli would log its user out
(errors.py).
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from cyan.api.errors import ApiError
from cyan.rates import KeyedBuckets
from cyan.settings import ApiSettings

WINDOW_S = 300.0
# Addresses and accounts followed at once; past that the least recently seen is forgotten.
MAX_KEYS = 10_000


class TooManyRequests(ApiError):
    http_status = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": self.retry_after}


def _per_window(count: int) -> KeyedBuckets[str] | None:
    if count <= 0:
        return None
    return KeyedBuckets(count, count / WINDOW_S, MAX_KEYS)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class ApiLimits:
    def __init__(
        self, settings: ApiSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.monotonic = monotonic
        self._requests = _per_window(settings.requests_per_5_min)
        self._logins = _per_window(settings.logins_per_5_min)
        self._stream_opens = _per_window(settings.stream_opens_per_5_min)
        self._open_streams: dict[str, int] = {}
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self.refused = 0  # requests answered 429, for metrics and tests

    # -- every request (the middleware) ----------------------------------------------------

    def request(self, address: str) -> TooManyRequests | None:
        if self._requests is None:
            return None
        wait = self._requests.take(address, self.monotonic())
        if wait is None:
            return None
        self.refused += 1
        return TooManyRequests(
            f"Too many requests from {address}: at most {self.settings.requests_per_5_min} "
            "per 5 minutes",
            wait,
        )

    # -- logins ----------------------------------------------------------------------------

    def login(self, address: str, username: str) -> None:
        """Before a password is checked: raise if the address or the account must wait."""
        now = self.monotonic()
        failures = self._failures.get(username.lower())
        if failures is not None and failures.locked_until > now:
            self.refused += 1
            raise TooManyRequests(
                "Too many failed logins for this account: try again later",
                failures.locked_until - now,
            )
        if self._logins is not None:
            wait = self._logins.take(address, now)
            if wait is not None:
                self.refused += 1
                raise TooManyRequests(
                    f"Too many logins from {address}: at most {self.settings.logins_per_5_min} "
                    "per 5 minutes",
                    wait,
                )

    def login_failed(self, username: str) -> None:
        allowed = self.settings.login_failures_before_lockout
        if allowed <= 0:
            return
        key = username.lower()
        failures = self._failures.get(key)
        if failures is None:
            if len(self._failures) >= MAX_KEYS:
                self._failures.popitem(last=False)
            failures = self._failures[key] = _Failures()
        else:
            self._failures.move_to_end(key)
        failures.count += 1
        if failures.count >= allowed:
            failures.count = 0
            failures.locked_until = self.monotonic() + self.settings.login_lockout_s

    def login_succeeded(self, username: str) -> None:
        self._failures.pop(username.lower(), None)

    # -- event streams ---------------------------------------------------------------------

    def open_streams(self, address: str) -> int:
        return self._open_streams.get(address, 0)

    def open_stream(self, address: str) -> Callable[[], None]:
        """Count a stream opening from ``address``; returns what to call when it closes."""
        most = self.settings.streams_per_address
        open_now = self._open_streams.get(address, 0)
        if most > 0 and open_now >= most:
            self.refused += 1
            raise TooManyRequests(
                f"Too many open event streams from {address}: at most {most} at once", 60.0
            )
        if self._stream_opens is not None:
            wait = self._stream_opens.take(address, self.monotonic())
            if wait is not None:
                self.refused += 1
                raise TooManyRequests(
                    f"Too many event streams opened from {address}: at most "
                    f"{self.settings.stream_opens_per_5_min} per 5 minutes",
                    wait,
                )
        self._open_streams[address] = open_now + 1
        closed = False

        def close() -> None:
            nonlocal closed
            if closed:
                return
            closed = True
            left = self._open_streams.get(address, 1) - 1
            if left > 0:
                self._open_streams[address] = left
            else:
                self._open_streams.pop(address, None)

        return close


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RequestLimitMiddleware:
    """Every HTTP request counts against its address; over the limit it is answered here,
    before routing, body or auth cost anything."""

    def __init__(self, app: ASGIApp, limits: ApiLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.limits.request(client_address(scope))
        if refused is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(refused.body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": refused.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", refused.retry_after.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
