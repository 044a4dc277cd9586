"""Kubernetes Events on a ClusterUpgrade, posted with the operator's own client.

One Event per transition, with a distinct reason, so ``kubectl describe`` and
``kubectl get events`` tell the story of an upgrade. Posting is best effort:
a failure to post an Event never fails a reconcile.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from bluegreen.kube.client import KubeClient, KubeError, Resource

logger = logging.getLogger(__name__)
EVENTS = Resource("", "v1", "events")
COMPONENT = "bluegreen-operator"


async def post_event(
    client: KubeClient,
    *,
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    type_: str = "Normal",
    now: datetime.datetime,
) -> None:
    meta = involved.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    timestamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name', 'unknown')}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
    }
    try:
        await client.create(EVENTS, body, namespace=namespace)
    except KubeError as exc:
        logger.warning("could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc)
