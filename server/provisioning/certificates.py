"""The site CA: it signs reader client certificates and the broker's, and keeps the CRL.

A CA directory holds:

    ca.key          the CA's private key (0600; the broker never needs it)
    ca.pem          the CA certificate: readers trust the broker by it, the broker readers
    crl.pem         the revocation list the broker checks every client certificate against
    broker.key/pem  the broker's own key (0640) and certificate, from `rollcall ca broker-cert`
    issued/ID.pem   the certificate most recently issued to reader ID, for revocation

Keys are ECDSA P-256. The CRL is re-signed at each revocation and valid for
CRL_DAYS: OpenSSL refuses every client once the CRL is past its next update.
"""

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.errors import ProvisioningError

CA_DAYS: Final = 3650
CERT_DAYS: Final = 825
CRL_DAYS: Final = 3650
_KEY_MODE: Final = 0o600
_BROKER_KEY_MODE: Final = 0o640  # group-readable: the broker's group (mosquitto) reads it


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM, and its serial number."""

    certificate_pem: bytes
    key_pem: bytes
    serial: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_private(path: Path, data: bytes, mode: int = _KEY_MODE) -> None:
    """Write a secret file that is never readable by others, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    path.chmod(mode)  # the umask may have narrowed it


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class CertificateAuthority:
    """A site CA kept in a directory; create one with `init`, open one with `open`."""

    def __init__(
        self, directory: Path, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
    ) -> None:
        self.directory = directory
        self._key = key
        self.certificate = certificate

    @property
    def certificate_path(self) -> Path:
        """The CA certificate (ca.pem)."""
        return self.directory / "ca.pem"

    @property
    def crl_path(self) -> Path:
        """The certificate revocation list (crl.pem)."""
        return self.directory / "crl.pem"

    @classmethod
    def init(cls, directory: Path, common_name: str = "Rollcall site CA") -> "CertificateAuthority":
        """Create a new CA (key, certificate, empty CRL) in `directory`; refuse to overwrite one."""
        if (directory / "ca.key").exists():
            raise ProvisioningError(f"{directory} already holds a CA key: refusing to replace it")
        key = _new_key()
        now = _now()
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o750)
            write_private(directory / "ca.key", _key_pem(key))
            ca = cls(directory, key, certificate)
            ca.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
            ca._write_crl([])
        except OSError as exc:
            raise ProvisioningError(f"cannot create the CA in {directory}: {exc}") from exc
        return ca

    @classmethod
    def open(cls, directory: Path) -> "CertificateAuthority":
        """Open the CA kept in `directory`."""
        try:
            key = serialization.load_pem_private_key(
                (directory / "ca.key").read_bytes(), password=None
            )
            certificate = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        except FileNotFoundError:
            raise ProvisioningError(
                f"no CA in {directory}: create one with `rollcall ca init`"
            ) from None
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"cannot read the CA in {directory}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProvisioningError(f"the CA key in {directory} is not an EC key")
        return cls(directory, key, certificate)

    def _sign(
        self,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        usage: x509.ObjectIdentifier,
        names: Sequence[x509.GeneralName] = (),
    ) -> x509.Certificate:
        now = _now()
        public = key.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self._key, hashes.SHA256())

    def issue_client(self, reader_id: str) -> IssuedCertificate:
        """Issue a client certificate whose CN is `reader_id`, and remember it for revocation."""
        key = _new_key()
        certificate = self._sign(reader_id, key, ExtendedKeyUsageOID.CLIENT_AUTH)
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        try:
            issued = self.directory / "issued"
            issued.mkdir(exist_ok=True)
            (issued / f"{reader_id}.pem").write_bytes(pem)
        except OSError as exc:
            raise ProvisioningError(f"cannot record the certificate of {reader_id}: {exc}") from exc
        return IssuedCertificate(pem, _key_pem(key), certificate.serial_number)

    def issue_broker(self, hostnames: Sequence[str]) -> IssuedCertificate:
        """Issue the broker's server certificate for `hostnames` (DNS names or IP addresses)."""
        if not hostnames:
            raise ProvisioningError("the broker certificate needs at least one host name")
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = _new_key()
        certificate = self._sign(hostnames[0], key, ExtendedKeyUsageOID.SERVER_AUTH, names)
        issued = IssuedCertificate(
            certificate.public_bytes(serialization.Encoding.PEM),
            _key_pem(key),
            certificate.serial_number,
        )
        try:
            write_private(self.directory / "broker.key", issued.key_pem, _BROKER_KEY_MODE)
            (self.directory / "broker.pem").write_bytes(issued.certificate_pem)
        except OSError as exc:
            raise ProvisioningError(f"cannot write the broker certificate: {exc}") from exc
        return issued

    def current_certificate(self, reader_id: str) -> x509.Certificate | None:
        """The certificate last issued to `reader_id` and not revoked, if any."""
        try:
            pem = (self.directory / "issued" / f"{reader_id}.pem").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProvisioningError(f"cannot read the certificate of {reader_id}: {exc}") from exc
        return x509.load_pem_x509_certificate(pem)

    def revoke(self, reader_id: str) -> int | None:
        """Revoke the reader's current certificate in the CRL; return its serial, None if none."""
        certificate = self.current_certificate(reader_id)
        if certificate is None:
            return None
        serials = [*self.revoked_serials(), certificate.serial_number]
        try:
            self._write_crl(serials)
            issued = self.directory / "issued" / f"{reader_id}.pem"
            issued.rename(issued.with_name(f"{reader_id}.{certificate.serial_number:x}.revoked"))
        except OSError as exc:
            raise ProvisioningError(f"cannot revoke the certificate of {reader_id}: {exc}") from exc
        return certificate.serial_number

    def revoked_serials(self) -> list[int]:
        """Serial numbers in the current CRL."""
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ProvisioningError(f"cannot read the CRL {self.crl_path}: {exc}") from exc
        return [entry.serial_number for entry in crl]

    def _write_crl(self, serials: Sequence[int]) -> None:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=CRL_DAYS))
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        temp = self.crl_path.with_name(".crl.pem.new")
        temp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        temp.chmod(0o644)
        temp.replace(self.crl_path)
