"""A workload for node rotations in the test world: what Flux would have put on the rotated cluster.

Used by the NodePools tests and `make demo DEMO=nodepools` alike, through the
cluster's own API (a client made from its kubeconfig Secret), so they see the
cluster as the operator does: a Deployment spread over the workers, its
PodDisruptionBudget, and a DaemonSet that drains must leave alone. Also the new
worker class a platform team adds to the ClusterClass before a rotation.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from bluegreen.kube.client import KubeClient, Resource

NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)
PODS = Resource("", "v1", "pods")
SECRETS = Resource("", "v1", "secrets")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
DAEMONSETS = Resource("apps", "v1", "daemonsets")
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
CLUSTER_CLASSES = Resource("cluster.x-k8s.io", "v1beta2", "clusterclasses")


async def cluster_client(management: KubeClient, *, namespace: str, name: str) -> KubeClient:
    """A client of a workload cluster through its kubeconfig Secret (key ``value``), as the operator reads it."""
    secret = await management.get(SECRETS, namespace=namespace, name=f"{name}-kubeconfig")
    if secret is None:
        raise LookupError(f"no kubeconfig Secret {namespace}/{name}-kubeconfig")
    return KubeClient.from_kubeconfig(yaml.safe_load(base64.b64decode(secret["data"]["value"])))


async def add_worker_class(management: KubeClient, worker_class: str, *, namespace: str = "fleet",
                           cluster_class: str = "quick-start") -> None:
    """A new machineDeployment class in the ClusterClass, as a platform team adds it before a rotation."""
    found = await management.get(CLUSTER_CLASSES, namespace=namespace, name=cluster_class)
    if found is None:
        raise LookupError(f"no ClusterClass {namespace}/{cluster_class}")
    classes = list(((found.get("spec") or {}).get("workers") or {}).get("machineDeployments") or [])
    if worker_class not in {item.get("class") for item in classes}:
        classes.append({"class": worker_class})
        await management.patch(CLUSTER_CLASSES, namespace=namespace, name=cluster_class,
                               body={"spec": {"workers": {"machineDeployments": classes}}})


def ready_pods(pods: Sequence[Mapping[str, Any]], *, app: str = "web") -> list[Mapping[str, Any]]:
    """The pods a PodDisruptionBudget counts as healthy: Ready and not being deleted."""
    return [pod for pod in pods if (pod["metadata"].get("labels") or {}).get("app") == app
            and not pod["metadata"].get("deletionTimestamp")
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (pod.get("status") or {}).get("conditions") or ())]


async def deploy_web(cluster: KubeClient, *, replicas: int, min_available: int, namespace: str = "shop",
                     timeout: float = 30.0) -> None:
    """Deployment ``web`` with its budget and DaemonSet ``node-exporter``, awaited until every web pod is Ready."""
    await cluster.create(NAMESPACES, body={"metadata": {"name": namespace}})
    labels = {"app": "web"}
    await cluster.create(DEPLOYMENTS, namespace=namespace, body={
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    })
    await cluster.create(PDBS, namespace=namespace, body={
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}},
    })
    await cluster.create(DAEMONSETS, namespace=namespace, body={
        "metadata": {"name": "node-exporter", "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                 "template": {"metadata": {"labels": {"app": "node-exporter"}},
                              "spec": {"containers": [{"name": "exporter", "image": "prom/node-exporter"}]}}},
    })
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if len(ready_pods(await cluster.list(PODS, namespace=namespace))) == replicas:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the web Deployment in {namespace} was not Ready after {timeout:g}s")
