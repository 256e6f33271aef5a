"""TLS interception for injecting ``environment_variable`` credentials (layer 1).

A sandbox whose session has ``environment_variable`` credentials sees only placeholders in
those variables. For a host a credential may reach, the egress proxy ends the sandbox's TLS
itself, with a certificate for that host signed by this process's own certificate authority.
It puts the secret in place of the placeholder, and sends the request on over a new TLS
connection that it verifies as any client would. The CA exists only in this process's memory.
Its certificate, never its key, is added to the CA bundle of the sandboxes that need it.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VALIDITY = datetime.timedelta(days=30)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class _Leaf:
    context: ssl.SSLContext
    expires: datetime.datetime


class Interceptor:
    """This process's CA, and the TLS contexts of intercepted connections."""

    def __init__(self, upstream_ca_file: Path | None = None):
        now = datetime.datetime.now(datetime.UTC)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = _name("agenthost sandbox egress CA")
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + 10 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.certificate_pem = self.certificate.public_bytes(serialization.Encoding.PEM)
        self._leaves: dict[str, _Leaf] = {}
        self._upstream = ssl.create_default_context()
        if upstream_ca_file is not None:
            self._upstream.load_verify_locations(cafile=str(upstream_ca_file))
        self._upstream.set_alpn_protocols(["http/1.1"])

    def bundle(self) -> bytes:
        """The system's CA bundle plus this CA: what a sandbox with injected credentials trusts."""
        try:
            system = SYSTEM_BUNDLE.read_bytes()
        except OSError:
            system = b""
        return system.rstrip(b"\n") + b"\n" + self.certificate_pem

    def upstream_context(self) -> ssl.SSLContext:
        """TLS to the real host: verified against the system's CAs (and the operator's extra ones)."""
        return self._upstream

    def server_context(self, host: str) -> ssl.SSLContext:
        """TLS towards the sandbox, as ``host``: a certificate for it signed by this CA (made once a month)."""
        now = datetime.datetime.now(datetime.UTC)
        leaf = self._leaves.get(host)
        if leaf is not None and leaf.expires - now > datetime.timedelta(days=1):
            return leaf.context
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alternative = x509.DNSName(host)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(host))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        # load_cert_chain reads files: the key lives in a private temporary file for the call only.
        with tempfile.NamedTemporaryFile("wb") as pem:
            pem.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                + certificate.public_bytes(serialization.Encoding.PEM)
                + self.certificate_pem
            )
            pem.flush()
            context.load_cert_chain(pem.name)
        self._leaves[host] = _Leaf(context, now + VALIDITY)
        return context
