"""Certificates and keys for the test control plane, made with the openssl command line.

One CA signs the apiserver's serving certificate and a client certificate for an admin in
``system:masters``; the controller-manager, the scheduler, KWOK, kubectl and the tests all use that
admin identity, as kwokctl does. A separate RSA key signs service-account tokens. Key usages are
set explicitly because Python's strict X.509 verification rejects a CA without them.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca_crt(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def apiserver_crt(self) -> Path:
        return self.folder / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.folder / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.folder / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.folder / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.folder / "sa.pub"


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed; the test cluster needs it for its PKI")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _sign(name: str, subject: str, extensions: str, cwd: Path) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "30", "-out", f"{name}.crt",
             "-extfile", f"{name}.ext", cwd=cwd)


def create_pki(folder: Path) -> Pki:
    """Write a fresh CA, apiserver and admin certificates and a service-account key pair."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-subj", "/CN=deckhand-test-ca",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=folder)
    _sign("apiserver", "/CN=kube-apiserver",
          "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
          "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,"
          "IP:127.0.0.1,IP:10.96.0.1\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=serverAuth\n", cwd=folder)
    _sign("admin", "/O=system:masters/CN=deckhand-test-admin",
          "keyUsage=critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage=clientAuth\n", cwd=folder)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    return Pki(folder)
