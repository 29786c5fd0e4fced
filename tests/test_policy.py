"""collab.policy: tokens in, grants out; origins; no network, a clock passed in."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from collab.errors import Forbidden, Unauthorized
from collab.policy.access import Access
from collab.policy.origins import Origins
from collab.policy.tokens import OPEN, Grant, Verifier, mint, token_of

SECRET = "a-test-secret-that-is-long-enough-for-hs512-0123456789abcdef-xyz"
NOW = 1_800_000_000.0


def test_a_minted_token_verifies_into_its_grant() -> None:
    token = mint(SECRET, "notes", "write", now=NOW, ttl=3600, user="ann")
    grant = Verifier(SECRET).verify(token, NOW + 10)
    assert grant == Grant("notes", "write", "ann", NOW + 3600)


def test_a_token_without_ttl_never_expires() -> None:
    token = mint(SECRET, "*", "read", now=NOW, ttl=None)
    assert "exp" not in jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_iat": False}
    )
    assert Verifier(SECRET).verify(token, NOW + 10**9).expires_at is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "a token is required"),
        ("", "a token is required"),
        ("not-a-jwt", "invalid token"),
        (mint("other", "notes", "read", now=NOW, ttl=60), "invalid token signature"),
        (mint(SECRET, "notes", "read", now=NOW - 120, ttl=60), "token expired"),
        (jwt.encode({"doc": "notes", "mode": "owner"}, SECRET), "'mode'"),
        (jwt.encode({"mode": "read"}, SECRET), "'doc'"),
        (jwt.encode({"doc": "n", "mode": "read", "exp": "soon"}, SECRET), "'exp'"),
        (jwt.encode({"doc": "n", "mode": "read", "sub": 7}, SECRET), "(?i)sub"),
        (jwt.encode({"doc": "n", "mode": "read"}, SECRET, algorithm="HS512"), "algorithm"),
        (jwt.encode({"doc": "n", "mode": "read"}, None, algorithm="none"), "algorithm"),  # type: ignore[arg-type]
    ],
)
def test_bad_tokens_are_unauthorized(token: str | None, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        Verifier(SECRET).verify(token, NOW)


def test_a_token_is_valid_until_its_exp() -> None:
    token = mint(SECRET, "notes", "read", now=NOW, ttl=2)
    Verifier(SECRET).verify(token, NOW + 1.9)
    with pytest.raises(Unauthorized, match="expired"):
        Verifier(SECRET).verify(token, NOW + 2)


def test_without_keys_everything_is_open() -> None:
    assert not Verifier().enabled
    assert Verifier().verify(None, NOW) is OPEN


def test_es256_tokens_verify_with_the_public_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = mint(pem, "team-a/*", "admin", now=NOW, ttl=60, algorithm="ES256")
    assert Verifier(public_key=public).verify(token, NOW).mode == "admin"
    # Signed by another key, or an HS256 token made with the public key as its secret.
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthorized):
        Verifier(public_key=public).verify(
            jwt.encode({"doc": "x", "mode": "read"}, other, algorithm="ES256"), NOW
        )
    with pytest.raises(Unauthorized):
        Verifier(SECRET, public).verify(mint(SECRET + "x", "x", "read", now=NOW, ttl=9), NOW)
    with pytest.raises(ValueError, match="PEM"):
        Verifier(public_key="not a key")


def test_grants_cover_names_prefixes_and_everything() -> None:
    one, team, every = Grant("notes", "read"), Grant("team-a/*", "write"), Grant("*", "read")
    assert one.covers("notes") and not one.covers("notes2") and not one.covers("team-a/notes")
    assert team.covers("team-a/notes") and team.covers("team-a/x/y")
    assert not team.covers("team-b/notes") and not team.covers("team-a")
    assert every.covers("anything/at/all")


def test_modes_are_ordered() -> None:
    read, write, admin = Grant("*", "read"), Grant("*", "write"), Grant("*", "admin")
    assert read.has("read") and not read.has("write") and not read.has("admin")
    assert write.has("read") and write.has("write") and not write.has("admin")
    assert admin.has("admin") and admin.has("") and not admin.has("owner")
    assert read.read_only and not write.read_only


def test_the_token_comes_from_the_bearer_header_or_the_query() -> None:
    assert token_of({"token": "q"}, {}) == "q"
    assert token_of({"token": "q"}, {"authorization": "Bearer h"}) == "h"
    assert token_of({}, {"authorization": "bearer  h "}) == "h"
    assert token_of({}, {"authorization": "Basic abc"}) is None
    assert token_of({"token": ""}, {}) is None


def test_origins() -> None:
    listed = Origins(["https://a.example,https://b.example/", "HTTPS://C.example"])
    assert listed.allows(None, "h:1")  # scripts send no Origin
    assert listed.allows("https://a.example", "h:1") and listed.allows("https://b.example", None)
    assert listed.allows("https://c.example", None)
    assert not listed.allows("https://evil.example", "h:1")
    assert not listed.allows("null", "h:1")
    # The server's own pages: Origin equals Host.
    assert listed.allows("http://h:1", "h:1") and listed.allows("https://h", "h:443")
    assert not listed.allows("http://h:2", "h:1")
    assert listed.listed("https://a.example") and not listed.listed("http://h:1")
    assert Origins().allows("https://evil.example", "h") and not Origins().restricted
    assert Origins(["*"]).allows("https://evil.example", "h")


def test_access_checks_the_origin_before_the_token() -> None:
    access = Access(Verifier(SECRET), Origins(["https://a.example"]))
    with pytest.raises(Forbidden, match="origin"):
        access.admit({}, {"origin": "https://evil.example"}, NOW)
    with pytest.raises(Unauthorized):
        access.admit({}, {"origin": "https://a.example"}, NOW)
    grant = access.admit({"token": mint(SECRET, "n", "read", now=NOW, ttl=9)}, {}, NOW)
    Access.require(grant, "n", "read")
    with pytest.raises(Forbidden, match="cover"):
        Access.require(grant, "m", "read")
    with pytest.raises(Forbidden, match="mode"):
        Access.require(grant, "n", "write")
    with pytest.raises(Forbidden, match="mode"):
        Access.require(grant, None, "admin")
