"""`vidda serve --tls-cert/--tls-key` and `vidda sync` over wss:// (loopback)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .cli_helpers import VIDDA, init_device, vidda_env
from .server_helpers import server_init


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_sync_over_tls_and_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    anne = init_device(tmp_path / "anne", "Anne")
    anne.run("plan", "new", "--municipality", "Aure", "--title", "Over TLS")
    cert, key = _self_signed(tmp_path)
    server_init(tmp_path / "srv", anne.workspace, anne.device)
    with subprocess.Popen(
        [
            *VIDDA,
            *("serve", "--home", str(tmp_path / "srv"), "--port", "0"),
            *("--tls-cert", str(cert), "--tls-key", str(key)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=vidda_env(passphrase=None),
    ) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            assert line.startswith("serving wss://127.0.0.1:"), line
            url = line.split()[1]
            # Without trusting the certificate: refused, nothing sent, one line.
            untrusted = anne.run("sync", "--server", url, "--once", "--json", check=False)
            status = json.loads(untrusted.stdout)
            assert untrusted.returncode == 1 and status["state"] == "offline"
            assert "certificate" in status["error"].lower()
            assert status["pending"] > 0
            # Trusting it (SSL_CERT_FILE, as for any private CA): synced.
            trusted = anne.run("sync", "--once", "--json", env=vidda_env(SSL_CERT_FILE=str(cert)))
            status = json.loads(trusted.stdout)
            assert status["state"] == "up_to_date" and status["pending"] == 0
            assert status["sent"] >= 8
        finally:
            server.terminate()
            server.wait(timeout=10)
