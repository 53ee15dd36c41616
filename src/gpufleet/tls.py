"""TLS for the hub and the agent: server contexts from --tls-cert/--tls-key, client trust from --ca,
and `gpufleet tls selfsigned` for a fleet without a PKI of its own.

Every problem with a file (missing, unreadable, not PEM, key not matching the certificate) is
one line naming the flag and the file, raised before anything listens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"


@dataclass(frozen=True, slots=True)
class ServerTLS:
    cert: Path
    key: Path


def server_tls(cert: Path | str | None, key: Path | str | None) -> ServerTLS | None:
    """Both flags or neither; the pair is loaded once here so a bad file fails at start."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UserError("--tls-cert and --tls-key go together: pass both (see `gpufleet tls selfsigned`)")
    tls = ServerTLS(Path(cert), Path(key))
    server_context(tls)
    return tls


def server_context(tls: ServerTLS) -> ssl.SSLContext:
    for flag, path in (("--tls-cert", tls.cert), ("--tls-key", tls.key)):
        if not path.is_file():
            raise UserError(f"{flag}: {path} does not exist or is not a file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except ssl.SSLError as e:
        raise UserError(f"--tls-cert {tls.cert} / --tls-key {tls.key}: not a matching PEM certificate and key "
                        f"({e.reason or e})") from None
    except OSError as e:
        raise UserError(f"--tls-cert/--tls-key: cannot read {e.filename}: {e.strerror or e}") from None
    return ctx


def client_verify(ca: Path | str | None) -> ssl.SSLContext | bool:
    """What an HTTP client's `verify=` takes (httpclient's and httpx's): True for the system's trust
    store, or a context trusting only --ca."""
    if ca is None:
        return True
    path = Path(ca)
    if not path.is_file():
        raise UserError(f"--ca: {path} does not exist or is not a file")
    ctx = ssl.create_default_context()
    try:
        ctx.load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError) as e:
        raise UserError(f"--ca: {path} holds no PEM certificate ({getattr(e, 'reason', None) or e})") from None
    except OSError as e:
        raise UserError(f"--ca: cannot read {path}: {e.strerror or e}") from None
    return ctx


def describe_tls_error(e: BaseException) -> str | None:
    """A line telling what to do when a connection failed on the hub's certificate, else None."""
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        why = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip(" ()") or "untrusted"
        return (f"the hub's TLS certificate is not trusted ({why}): pass --ca FILE with the CA that signed it "
                "(for `gpufleet tls selfsigned`, its ca.pem)")
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "the hub does not speak TLS on this port: use http:// in --hub, or start the hub with --tls-cert"
    return None


# ---- gpufleet tls selfsigned ------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Created 0600 from the start (never briefly readable), replaced atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def selfsigned(out: Path, hosts: list[str], days: int = 825) -> dict[str, Path]:
    """A CA and a server certificate it signed for `hosts` (DNS names or IPs); returns the paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    names = hosts or [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            if not h or any(c.isspace() or c in "/:@" for c in h):
                raise UserError(f"--host {h!r} is not a host name or IP address") from None
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(minutes=5)  # clocks across a fleet disagree a little

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gpufleet CA {now:%Y-%m-%d}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[:64])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    paths = {"ca": out / CA_FILE, "ca_key": out / CA_KEY_FILE, "cert": out / CERT_FILE, "key": out / KEY_FILE}
    present = [p.name for p in paths.values() if p.exists()]
    if present:
        # A new CA would silently untrust every agent holding the old ca.pem.
        raise UserError(f"--out {out} already holds {', '.join(present)}: pick another directory or remove them")
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(paths["ca_key"], pem_key(ca_key))
        _write_private(paths["key"], pem_key(key))
        _write_public(paths["ca"], ca.public_bytes(serialization.Encoding.PEM))
        _write_public(paths["cert"], cert.public_bytes(serialization.Encoding.PEM))
    except OSError as e:
        raise UserError(f"--out {out}: cannot write: {e.strerror or e}") from None
    return paths
