"""API keys: every request's project comes from its key, never from its payload.

Keys are stored only as SHA-256 hashes in ``api_keys``; ``TOKENTRAIL_API_KEYS``
(``key=project,key2=project2``) adds keys from the environment for deployments
that manage secrets outside the database. With no key at all the server runs
open, every request in the ``default`` project — allowed only on loopback.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Mapping

from fastapi import HTTPException, Request

from tokentrail.schema.store import Store

OPEN_PROJECT = "default"
KEYS_ENV = "TOKENTRAIL_API_KEYS"
_REFRESH_SECONDS = 10.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "tt_" + secrets.token_urlsafe(24)


def parse_env_keys(value: str) -> dict[str, str]:
    """``key=project,…`` → {sha256(key): project}; raises ValueError naming a bad entry."""
    keys: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        key, sep, project = entry.partition("=")
        if not sep or not key.strip() or not project.strip():
            raise ValueError(f"{KEYS_ENV}: entry {entry[:4]}… must look like key=project")
        keys[hash_key(key.strip())] = project.strip()
    return keys


def create_key(store: Store, project_id: str, name: str = "") -> str:
    """Store a new key for ``project_id`` and return it; only its hash is kept."""
    key = new_key()
    store.insert_columns(
        "api_keys", {"key_sha256": [hash_key(key)], "project_id": [project_id], "name": [name]}
    )
    return key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Unauthenticated(Exception):
    """No usable API key; ``missing`` tells "none sent" from "unknown or revoked"."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


class KeyRing:
    """Maps bearer keys to projects, re-reading the table every few seconds."""

    def __init__(self, store: Store, env_keys: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._env_keys = dict(env_keys or {})
        self._stored: dict[str, str] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def _stored_keys(self) -> dict[str, str]:
        with self._lock:
            if time.monotonic() - self._loaded_at > _REFRESH_SECONDS:
                rows = self._store.query(
                    "SELECT key_sha256, project_id FROM api_keys FINAL WHERE revoked = 0"
                ).rows
                self._stored = {digest: project for digest, project in rows}
                self._loaded_at = time.monotonic()
            return self._stored

    @property
    def is_open(self) -> bool:
        """No key configured anywhere: the server accepts anonymous requests."""
        return not self._env_keys and not self._stored_keys()

    def project_for(self, key: str) -> str | None:
        digest = hash_key(key)
        return self._env_keys.get(digest) or self._stored_keys().get(digest)

    def project_for_authorization(self, authorization: str) -> str:
        """The project of an ``Authorization`` value; raises :class:`Unauthenticated`.

        Transport-neutral so OTLP/HTTP, the API and OTLP/gRPC (whose metadata
        carries the same header) apply one rule.
        """
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            project = self.project_for(key.strip())
            if project:
                return project
            raise Unauthenticated("unknown or revoked API key", missing=False)
        if self.is_open:
            return OPEN_PROJECT
        raise Unauthenticated("missing API key: send Authorization: Bearer <key>", missing=True)

    def dependency(self) -> Callable[[Request], str]:
        """A FastAPI dependency resolving the request's project or answering 401."""

        def project_id(request: Request) -> str:
            try:
                return self.project_for_authorization(request.headers.get("authorization", ""))
            except Unauthenticated as exc:
                # RFC 9110 asks for a challenge when no credentials were sent.
                headers = {"WWW-Authenticate": "Bearer"} if exc.missing else None
                raise HTTPException(401, str(exc), headers=headers) from exc

        return project_id
