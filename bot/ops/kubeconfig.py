"""``deckhand kubeconfig``: a kubeconfig for the bot's ServiceAccount (the systemd install), with a
token from the TokenRequest API."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, TextIO

import yaml

from deckhand.bot.config import parse_duration
from deckhand.bot.errors import KubeError
from deckhand.bot.kube.tokens import service_account_token


def service_account_kubeconfig(server: str, ca_file: str | None, token: str, namespace: str,
                               service_account: str) -> dict[str, Any]:
    """A kubeconfig with one context that authenticates with ``token``."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file:
        cluster["certificate-authority-data"] = base64.b64encode(
            Path(ca_file).read_bytes()).decode()
    name = f"{service_account}@{namespace}"
    return {"apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": "cluster", "user": name,
                                                    "namespace": namespace}}]}


def kubeconfig_main(output: Path, namespace: str, service_account: str, duration: str,
                    admin_kubeconfig: Path | None, context: str | None, err: TextIO) -> int:
    """Ask the TokenRequest API (with the admin's kubeconfig) for a token of the ServiceAccount
    and write a kubeconfig with it to ``output`` (mode 0600: it is a credential)."""
    try:
        seconds = int(parse_duration(duration).total_seconds())
    except ValueError as e:
        print(e, file=err)
        return 2
    try:
        server, ca_file, token = service_account_token(admin_kubeconfig, namespace,
                                                       service_account, seconds, context)
    except KubeError as e:
        print(e, file=err)
        return 1
    text = yaml.safe_dump(service_account_kubeconfig(server, ca_file, token, namespace,
                                                     service_account), sort_keys=False)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    print(f"wrote {output}: serviceaccount {namespace}/{service_account} on {server}, token "
          f"valid {duration} (the API server may shorten it)", file=err)
    return 0
