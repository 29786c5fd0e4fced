"""Signed tokens (JWT) and what they allow.

A token is a JWT signed with HS256 (``Config.auth_secret``) or ES256 (verified with
``Config.auth_public_key``). Its claims:

- ``doc``: one document name (``notes``), a prefix ending in ``*`` (``team-a/*``:
  every name that starts with ``team-a/``), or ``*`` for every document;
- ``mode``: ``read``, ``write`` or ``admin`` (each allows what the one before does;
  ``admin`` also the destructive HTTP endpoints);
- ``exp``: when it stops being valid (seconds since the epoch). A token without
  ``exp`` never expires; ``collab token`` writes one only when asked (``--ttl 0``);
- ``sub`` (optional): the user, recorded as the author of the connection's edits.

:meth:`Verifier.verify` turns a token into a :class:`Grant` or raises
:class:`~collab.errors.Unauthorized`; expiry is checked against the clock the
caller passes in, so a verifier is a pure function of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from collab.errors import Unauthorized

# PyJWT (and, through it, cryptography: ~9 MiB of a server's memory) is imported only
# once a key is configured or a token is minted: a server without authentication never
# loads it.

__all__ = ["MODES", "OPEN", "Grant", "Mode", "Verifier", "mint", "token_of"]

Mode = Literal["read", "write", "admin"]

#: The modes, weakest first: each allows what the ones before it allow.
MODES: Final[tuple[Mode, ...]] = ("read", "write", "admin")

#: The query parameter stock y-websocket providers send (``params: { token }``).
TOKEN_PARAM: Final = "token"

#: Longest token accepted (a real one is a few hundred bytes).
_MAX_TOKEN = 8192


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token allows: documents matching ``doc``, at ``mode``, as ``user``.

    ``expires_at`` is seconds since the epoch, ``None`` for never.
    """

    doc: str
    mode: Mode
    user: str | None = None
    expires_at: float | None = None

    def covers(self, name: str) -> bool:
        """Whether document ``name`` is one this grant names (whatever the mode)."""
        if self.doc == "*":
            return True
        if self.doc.endswith("*"):
            return name.startswith(self.doc[:-1])
        return name == self.doc

    def allows(self, name: str, need: str) -> bool:
        """Whether ``need`` (a mode, or ``""`` for nothing) on document ``name`` is allowed."""
        return self.covers(name) and self.has(need)

    def has(self, need: str) -> bool:
        """Whether this grant's mode is at least ``need`` (``""`` always is)."""
        if not need:
            return True
        return need in MODES and MODES.index(self.mode) >= MODES.index(need)

    @property
    def read_only(self) -> bool:
        return self.mode == "read"


#: What everyone holds while authentication is off.
OPEN: Final = Grant("*", "admin")


class Verifier:
    """Checks tokens against an HS256 ``secret`` and/or an ES256 ``public_key`` (PEM).

    With neither, :attr:`enabled` is False and :meth:`verify` grants :data:`OPEN`.

    Raises:
        ValueError: ``public_key`` is not a PEM public key (the message says so).
    """

    def __init__(self, secret: str = "", public_key: str = "") -> None:
        self._keys: list[tuple[Any, str]] = []
        if secret:
            self._keys.append((secret, "HS256"))
        if public_key:
            import jwt

            try:
                key = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).prepare_key(
                    public_key
                )
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                raise ValueError(f"auth_public_key is not an EC public key in PEM: {exc}") from None
            self._keys.append((key, "ES256"))

    @property
    def enabled(self) -> bool:
        """True when tokens are required."""
        return bool(self._keys)

    def verify(self, token: str | None, now: float) -> Grant:
        """The grant of ``token`` at time ``now`` (seconds since the epoch).

        Raises:
            Unauthorized: no token, not a JWT of ours (signature, algorithm), claims
                missing or malformed, or ``exp`` passed (the reason says which).
        """
        if not self._keys:
            return OPEN
        if not token:
            raise Unauthorized("a token is required (?token= or Authorization: Bearer)")
        if len(token) > _MAX_TOKEN:
            raise Unauthorized("invalid token")
        claims = self._decode(token)
        return _grant(claims, now)

    def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise Unauthorized("invalid token") from None
        for key, alg in self._keys:
            if alg != algorithm:
                continue
            try:
                # Times are ours to check, against the caller's clock.
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
                )
            except jwt.InvalidSignatureError:
                raise Unauthorized("invalid token signature") from None
            except jwt.InvalidTokenError as exc:
                raise Unauthorized(f"invalid token: {exc}") from None
            return claims
        raise Unauthorized("invalid token: unexpected algorithm")


def _grant(claims: Mapping[str, Any], now: float) -> Grant:
    doc, mode, sub, exp, nbf = (claims.get(k) for k in ("doc", "mode", "sub", "exp", "nbf"))
    if not isinstance(doc, str) or not doc:
        raise Unauthorized("invalid token: 'doc' must name a document, a prefix* or *")
    if mode not in MODES:
        raise Unauthorized("invalid token: 'mode' must be read, write or admin")
    if sub is not None and not isinstance(sub, str):
        raise Unauthorized("invalid token: 'sub' must be a string")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and now < nbf:
        raise Unauthorized("token not valid yet")
    expires_at: float | None = None
    if exp is not None:
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            raise Unauthorized("invalid token: 'exp' must be a time in seconds")
        expires_at = float(exp)
        if now >= expires_at:
            raise Unauthorized("token expired")
    return Grant(doc, cast(Mode, mode), sub or None, expires_at)


def mint(
    key: str,
    doc: str,
    mode: str,
    *,
    now: float,
    ttl: float | None,
    user: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """A token for ``doc`` at ``mode``, valid ``ttl`` seconds from ``now`` (``None``: no
    ``exp``, never expires), signed with ``key`` (an HS256 secret, or an ES256 private
    key in PEM with ``algorithm="ES256"``).

    Raises:
        ValueError: an unknown mode, an empty doc or key.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not doc:
        raise ValueError("doc must be a document name, a prefix ending in * or *")
    if not key:
        raise ValueError("a secret is needed to sign the token")
    claims: dict[str, Any] = {"doc": doc, "mode": mode, "iat": int(now)}
    if ttl is not None:
        claims["exp"] = math.ceil(now + ttl)
    if user:
        claims["sub"] = user
    import jwt

    try:
        return jwt.encode(claims, key, algorithm=algorithm)
    except (jwt.InvalidKeyError, jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot sign with this key ({algorithm}): {exc}") from None


def token_of(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The token a request carries: ``Authorization: Bearer`` (headers with lower-case
    names), else the ``token`` query parameter; ``None`` when neither."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return query.get(TOKEN_PARAM) or None
