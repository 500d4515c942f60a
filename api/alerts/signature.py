"""Webhook signatures: HMAC-SHA256 over the timestamp and the raw body.

A receiver recomputes ``HMAC-SHA256(secret, f"{timestamp}.".encode() + body)``,
compares it with ``X-Tokentrail-Signature: sha256=<hex>`` in constant time, and
rejects timestamps far from its clock. The timestamp is inside the signed bytes
so a captured request cannot be replayed later with a fresh header.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Tokentrail-Signature"
TIMESTAMP_HEADER = "X-Tokentrail-Timestamp"
EVENT_HEADER = "X-Tokentrail-Event"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Tokentrail-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a Python receiver runs on the two headers and the raw body."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now_s - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)
