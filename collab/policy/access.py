"""The security policy as the gate and the HTTP router ask it: once per handshake or
request, never per message.

:meth:`Access.admit` checks a request's ``Origin`` and token and returns the
:class:`~collab.policy.tokens.Grant` it carries (:data:`~collab.policy.tokens.OPEN`
while authentication is off); :meth:`Access.require` checks a grant against a
document and a mode. Both raise the error the transport answers with: 401
:class:`~collab.errors.Unauthorized` or 403 :class:`~collab.errors.Forbidden`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from collab.config import Config
from collab.errors import Forbidden
from collab.policy.origins import Origins
from collab.policy.tokens import Grant, Verifier, token_of

__all__ = ["Access"]


class Access:
    """Tokens and origins for one server."""

    def __init__(self, verifier: Verifier, origins: Origins) -> None:
        self.verifier = verifier
        self.origins = origins

    @classmethod
    def from_config(cls, config: Config) -> Access:
        """The policy ``config`` describes; ``auth_public_key`` names a PEM file.

        Raises:
            ValueError: the public key file cannot be read or is not a key.
        """
        public_key = ""
        if config.auth_public_key:
            try:
                public_key = Path(config.auth_public_key).read_text()
            except OSError as exc:
                raise ValueError(f"auth_public_key: cannot read {exc.filename}") from None
        return cls(Verifier(config.auth_secret, public_key), Origins(config.allow_origin))

    @property
    def enabled(self) -> bool:
        """True when tokens are required."""
        return self.verifier.enabled

    def check_origin(self, headers: Mapping[str, str]) -> None:
        """Raises Forbidden when the request's ``Origin`` is not allowed (lower-case names)."""
        origin = headers.get("origin")
        if not self.origins.allows(origin, headers.get("host")):
            raise Forbidden(f"origin {origin} is not allowed")

    def admit(self, query: Mapping[str, str], headers: Mapping[str, str], now: float) -> Grant:
        """The grant of a request (``Origin`` checked first).

        Raises:
            Forbidden: the ``Origin`` is not allowed.
            Unauthorized: auth is on and the token is missing, bad or expired.
        """
        self.check_origin(headers)
        return self.verifier.verify(token_of(query, headers), now)

    @staticmethod
    def require(grant: Grant, doc: str | None, need: str) -> None:
        """Raises Forbidden unless ``grant`` allows ``need`` on ``doc`` (``None``: on
        whatever it covers, as for a list the caller then filters)."""
        if doc is not None and not grant.covers(doc):
            raise Forbidden(f"the token does not cover document {doc!r}")
        if not grant.has(need):
            raise Forbidden(f"the token's mode is {grant.mode}; this needs {need}")
