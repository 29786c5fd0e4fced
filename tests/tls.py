"""A self-signed certificate for 127.0.0.1 and localhost, made per test by the openssl CLI.

``make_certificate(directory)`` writes ``cert.pem`` and ``key.pem`` and returns their
paths; ``trusting(cert)`` is a client TLS context that trusts that one certificate
(and nothing else). Without ``openssl`` the test is skipped, or fails under CI=true.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from tests.interop.node_peer import missing_or_fail


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, private key) in ``directory``: self-signed, EC P-256, two days."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_or_fail("the openssl command is not installed")
        raise AssertionError("unreachable")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=collab-test"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that verifies the server against ``cert`` only."""
    return ssl.create_default_context(cafile=str(cert))
