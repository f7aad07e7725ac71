"""A ServiceAccount token through the TokenRequest API, for ``deckhand kubeconfig``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from kubernetes import client, config

from deckhand.bot.errors import (
    KubeError,
)
from deckhand.bot.kube.failures import FAILURES, kube_error


def service_account_token(kubeconfig: Path | None, namespace: str, name: str, seconds: int,
                          context: str | None = None) -> tuple[str, str | None, str]:
    """A token for ServiceAccount ``namespace/name`` through the TokenRequest API, asked with
    the given (admin) kubeconfig: (apiserver URL, path of its CA file or None, token)."""
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                                context=context, client_configuration=cfg)
    except (config.ConfigException, OSError) as e:
        raise KubeError(f"cannot use the kubeconfig {kubeconfig or '$KUBECONFIG'}: {e}") from e
    api = client.CoreV1Api(client.ApiClient(cfg))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}}
    try:
        # The client serializes a plain dict body as it is; its type hint says a model.
        answer = api.create_namespaced_service_account_token(name, namespace, body)  # type: ignore[arg-type]
    except FAILURES as e:
        raise kube_error(e, f"requesting a token for serviceaccount {namespace}/{name}",
                         host=urlsplit(str(cfg.host)).netloc, waited=0, write=True) from e
    token = answer.status.token if answer.status else None
    if not token:
        raise KubeError(f"the API server issued no token for serviceaccount {namespace}/{name}")
    return str(cfg.host), cfg.ssl_ca_cert, str(token)


