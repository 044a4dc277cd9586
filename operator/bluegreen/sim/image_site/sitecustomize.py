"""Run the operator in a test world without what its image does not install.

The harness puts this directory first on PYTHONPATH of the operator processes it starts; Python imports
``sitecustomize`` at start-up. The virtualenv holds the official Kubernetes client and pykube-ng for the
tests that check the emulator against them, but the image (``pip install .``) holds neither, and kopf
imports both when it can: ~40 MiB and half a second at every start, and a different login path (kopf's
own kubeconfig and service-account login) than in a cluster.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

NOT_IN_THE_IMAGE = frozenset({"kubernetes", "kubernetes_asyncio", "pykube"})


class _NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in NOT_IN_THE_IMAGE:
            raise ImportError(f"{fullname} is not installed in the operator image")
        return None


sys.meta_path.insert(0, _NotInTheImage())
