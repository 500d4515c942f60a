"""Delivery: one alert event to each channel of its rule, with bounded retries.

The HTTP sender, the backoff sleeper and the signing clock are injected, so
tests drive retries without waiting; by default it is the standard library's
``urllib`` (no extra dependency in the server install) and ``time.sleep``.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from tokentrail import __version__
from tokentrail.api.alerts.models import AlertPayload, Channel, WebhookChannel
from tokentrail.api.alerts.signature import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

_USER_AGENT = f"tokentrail/{__version__}"
_RETRYABLE = frozenset({408, 425, 429})


@dataclass(frozen=True)
class HttpReply:
    status: int
    retry_after_s: float | None = None


# POST ``body`` to ``url`` with ``headers`` within ``timeout`` seconds. Raises
# OSError (or http.client.HTTPException) when no reply arrives.
Sender = Callable[[str, bytes, Mapping[str, str], float], HttpReply]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an answer: a signed alert is never re-sent to another address."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpReply:
    """The default sender."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(65_536)
            return HttpReply(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return HttpReply(error.code, _seconds(error.headers.get("Retry-After")))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and waits are both bounded, so a dead receiver cannot stall the evaluator.

    At most ``attempts * timeout_s`` is spent in requests plus ``max_total_delay_s``
    waiting between them.
    """

    attempts: int = 4
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_total_delay_s: float = 60.0
    timeout_s: float = 10.0

    def delay(self, retry: int, asked_s: float | None) -> float:
        """The wait before retry ``retry`` (1-based): doubling, or longer if the receiver
        asked (Retry-After), never above ``max_delay_s``."""
        return min(self.max_delay_s, max(self.first_delay_s * 2 ** (retry - 1), asked_s or 0.0))


@dataclass(frozen=True)
class DeliveryResult:
    channel: int
    channel_type: str
    target: str
    status: Literal["delivered", "failed"]
    attempts: int
    http_status: int | None
    error: str
    finished_s: float


def target_of(url: str) -> str:
    """Scheme and host of ``url``: paths and queries of webhooks often hold tokens."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(payload: AlertPayload) -> str:
    """The message a Slack-compatible incoming webhook shows."""
    if payload.state == "resolved":
        icon, label = ":white_check_mark:", "Resolved"
    else:
        icon, label = ":rotating_light:", "Still firing" if payload.repeat else "Firing"
    # Only an absolute URL can be a link; a bare path is shown as text.
    absolute = payload.link.startswith(("http://", "https://"))
    link = f"<{payload.link}|Show the numbers>" if absolute else _slack_escape(payload.link)
    head = f"{icon} *{label}: {_slack_escape(payload.rule_name)}*"
    return f"{head}\n{_slack_escape(payload.summary)}\n{link}"


def render(channel: Channel, payload: AlertPayload) -> bytes:
    if isinstance(channel, WebhookChannel):
        return payload.model_dump_json().encode("utf-8")
    return json.dumps({"text": slack_text(payload)}, ensure_ascii=False).encode("utf-8")


@dataclass
class Deliverer:
    """Sends events; every collaborator that touches the world is replaceable."""

    sender: Sender = post
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time  # signing timestamps and finish times
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def deliver(self, payload: AlertPayload, channels: Sequence[Channel]) -> list[DeliveryResult]:
        return [self._deliver(index, channel, payload) for index, channel in enumerate(channels)]

    def _headers(self, channel: Channel, body: bytes, event_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if isinstance(channel, WebhookChannel):
            # A fresh timestamp per attempt: a retry after a long backoff must not
            # look like a replay to the receiver.
            timestamp = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(channel.secret, timestamp, body)
            headers[EVENT_HEADER] = event_id
        return headers

    def _attempt(self, channel: Channel, body: bytes, event_id: str) -> tuple[HttpReply, str]:
        headers = self._headers(channel, body, event_id)
        try:
            reply = self.sender(channel.url, body, headers, self.policy.timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            return HttpReply(0), f"{type(exc).__name__}: {exc}"
        return reply, "" if 200 <= reply.status < 300 else f"HTTP {reply.status}"

    def _deliver(self, index: int, channel: Channel, payload: AlertPayload) -> DeliveryResult:
        body = render(channel, payload)
        attempts, waited = 0, 0.0
        while True:
            attempts += 1
            reply, error = self._attempt(channel, body, payload.event_id)
            retryable = reply.status == 0 or reply.status >= 500 or reply.status in _RETRYABLE
            if not error or not retryable or attempts >= self.policy.attempts:
                break
            delay = self.policy.delay(attempts, reply.retry_after_s)
            if waited + delay > self.policy.max_total_delay_s:
                break
            self.sleep(delay)
            waited += delay
        return DeliveryResult(
            channel=index,
            channel_type=channel.type,
            target=target_of(channel.url),
            status="failed" if error else "delivered",
            attempts=attempts,
            http_status=reply.status or None,
            error=error,
            finished_s=self.clock(),
        )
