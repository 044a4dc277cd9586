"""Clients for workload clusters, built from kubeconfig Secrets on the management cluster.

Cluster API and EKS Anywhere write each cluster's kubeconfig into a Secret.
The operator reads blue's and green's clusters through those Secrets, the way
Flux's ``kubeConfig.secretRef`` does: the keys tried are the one given, then
``value``, then ``value.yaml``; exec plugins are refused.

A client is cached per Secret and rebuilt when the Secret's
``resourceVersion`` changes (certificates rotate; a re-created cluster gets a
new CA), so a long-running operator never talks to a cluster with stale
credentials and never opens a new connection pool per call.

Remote clients introduce themselves with the management client's User-Agent unless
told otherwise: the operator's calls on blue and green are then the operator's too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

from bluegreen.kube import client as kubeclient
from bluegreen.kube import config as kubeconfig

SECRETS = kubeclient.Resource("", "v1", "secrets")
FALLBACK_KEYS = ("value", "value.yaml")


class KubeconfigSecretError(kubeclient.KubeError):
    """The kubeconfig Secret is missing, has none of the keys, or holds an unusable kubeconfig."""


def kubeconfig_from_secret(secret: Mapping[str, Any], *, key: str = "value") -> tuple[str, str]:
    """The kubeconfig text in a Secret and the key it was found under (given key, ``value``, ``value.yaml``)."""
    metadata = secret.get("metadata") or {}
    where = f"Secret {metadata.get('namespace', '?')}/{metadata.get('name', '?')}"
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}
    for candidate in dict.fromkeys((key, *FALLBACK_KEYS)):
        if candidate in data:
            try:
                return base64.b64decode(data[candidate], validate=True).decode(), candidate
            except (binascii.Error, ValueError):
                raise KubeconfigSecretError(f"{where}: key {candidate!r} is not valid base64") from None
        if candidate in string_data:
            return str(string_data[candidate]), candidate
    tried = ", ".join(dict.fromkeys((key, *FALLBACK_KEYS)))
    raise KubeconfigSecretError(f"{where} has none of the keys {tried}")


@dataclasses.dataclass
class _Cached:
    resource_version: str
    client: kubeclient.KubeClient


class RemoteClients:
    """Clients for the clusters whose kubeconfig Secrets live on the management cluster."""

    def __init__(self, management: kubeclient.KubeClient, *, timeout: float = kubeclient.DEFAULT_TIMEOUT,
                 field_manager: str | None = None, user_agent: str | None = None) -> None:
        self._management = management
        self._timeout = timeout
        self._field_manager = field_manager
        self._user_agent = user_agent or management.user_agent
        self._cache: dict[tuple[str, str, str], _Cached] = {}

    async def client(self, *, namespace: str, name: str, key: str = "value") -> kubeclient.KubeClient:
        """A client for the cluster in Secret ``namespace/name``; raises KubeconfigSecretError if unusable."""
        secret = await self._management.get(SECRETS, namespace=namespace, name=name)
        if secret is None:
            self._cache.pop((namespace, name, key), None)
            raise KubeconfigSecretError(f"Secret {namespace}/{name} (the cluster's kubeconfig) does not exist yet")
        resource_version = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        cached = self._cache.get((namespace, name, key))
        if cached is not None and cached.resource_version == resource_version and resource_version:
            return cached.client
        text, found_key = kubeconfig_from_secret(secret, key=key)
        try:
            connection = kubeconfig.load_kubeconfig_text(text, source=f"Secret {namespace}/{name} key {found_key}")
        except kubeconfig.KubeConfigError as exc:
            raise KubeconfigSecretError(str(exc)) from None
        new_client = kubeclient.KubeClient(connection, timeout=self._timeout, field_manager=self._field_manager,
                                           user_agent=self._user_agent)
        if cached is not None:
            await cached.client.close()
        self._cache[(namespace, name, key)] = _Cached(resource_version, new_client)
        return new_client

    async def forget(self, *, namespace: str, name: str, key: str = "value") -> None:
        """Drop the cached client (e.g. when the cluster was deleted)."""
        cached = self._cache.pop((namespace, name, key), None)
        if cached is not None:
            await cached.client.close()

    async def close(self) -> None:
        cached_clients = list(self._cache.values())
        self._cache.clear()
        for cached in cached_clients:
            await cached.client.close()
