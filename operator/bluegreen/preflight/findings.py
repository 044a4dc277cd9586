"""One object that uses an API version the target release no longer serves, and where it was seen.

Shared by the live scan and the manifest scan so that status and the CLI show
both kinds of evidence the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bluegreen.preflight.removed_apis import Removal


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str
    namespace: str | None  # None for cluster-scoped objects and manifests that name no namespace
    name: str
    api_version: str
    removed_in: str
    replacement: str
    where: str  # "live on <cluster>" or "in <source path>"

    @classmethod
    def of(cls, removal: Removal, *, namespace: str | None, name: str, where: str) -> Finding:
        return cls(kind=removal.kind, namespace=namespace or None, name=name, api_version=removal.api_version,
                   removed_in=removal.removed_in, replacement=removal.replacement, where=where)

    def to_status(self) -> dict[str, Any]:
        """The camelCase form for ``status.preflight.findings``."""
        entry: dict[str, Any] = {"kind": self.kind, "name": self.name, "apiVersion": self.api_version,
                                 "removedIn": self.removed_in, "replacement": self.replacement, "where": self.where}
        if self.namespace:
            entry["namespace"] = self.namespace
        return entry
