"""The placeholders a metric's query or URL may hold, and their substitution.

``{{cluster}}`` is the side being measured; ``{{blue}}`` and ``{{green}}`` are
the two clusters' names; ``{{namespace}}`` and ``{{name}}`` are the
ClusterUpgrade's. The runner builds one :class:`Placeholders` per check from
the :class:`~bluegreen.analysis.base.CheckContext`; a provider substitutes
them when it knows which side it measures, since a comparative metric runs
the same query once per side.

Every value is a Kubernetes name (lowercase letters, digits and ``-``), so a
substituted value can neither close a PromQL string nor bring in a
placeholder of its own. A placeholder that is not one of these is an error
naming the ones that exist: left in place it would reach Prometheus as text
and silently match nothing.
"""

from __future__ import annotations

import dataclasses
import re

from bluegreen.analysis.base import CheckContext, MetricError

NAMES = ("cluster", "blue", "green", "namespace", "name")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


@dataclasses.dataclass(frozen=True)
class Placeholders:
    blue: str
    green: str
    namespace: str
    name: str

    @classmethod
    def from_context(cls, ctx: CheckContext) -> Placeholders:
        return cls(blue=ctx.blue, green=ctx.green, namespace=ctx.namespace, name=ctx.upgrade)

    def render(self, template: str, *, cluster: str, field: str) -> str:
        """``template`` with every placeholder replaced; ``field`` names where it came from, for the error."""
        values = {"cluster": cluster, "blue": self.blue, "green": self.green,
                  "namespace": self.namespace, "name": self.name}
        unknown = sorted({match.group(1) for match in _PLACEHOLDER.finditer(template)} - values.keys())
        if unknown:
            listed = ", ".join("{{" + name + "}}" for name in unknown)
            known = ", ".join("{{" + name + "}}" for name in NAMES)
            raise MetricError(f"{field} has unknown placeholder(s) {listed}; the known ones are {known}")
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
