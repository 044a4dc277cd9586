"""Kubernetes versions as the providers write them: ``1.31``, ``v1.31.2``, ``v1.31.2+eks.1``.

Only major and minor matter for the upgrade rules; the patch level is kept for
display. Comparisons are on (major, minor, patch).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Digits bounded: a version is also arithmetic (the in-place path lists every minor in between), so
# 1.999999999 must be refused as input, not ground through.
VERSION_PATTERN = r"^v?[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,6})?([-+][0-9A-Za-z.+-]*)?$"
_VERSION = re.compile(r"^v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?(?:[-+][0-9A-Za-z.+-]*)?$")


class KubeVersion(NamedTuple):
    major: int
    minor: int
    patch: int | None = None

    @property
    def minor_key(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}" + (f".{self.patch}" if self.patch is not None else "")


def parse_version(text: str) -> KubeVersion:
    """Parse a version; raise ValueError naming the accepted forms."""
    match = _VERSION.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes version; write it as \"1.31\" or \"v1.31.2\"")
    major, minor, patch = match.groups()
    return KubeVersion(int(major), int(minor), int(patch) if patch is not None else None)


def with_version_style(template: str, version: KubeVersion) -> str:
    """Render ``version`` in the style of ``template`` (``v1.30.4`` -> ``v1.31.0``, ``1.30`` -> ``1.31``).

    Cluster API wants a full ``vX.Y.Z``; EKS Anywhere wants ``"X.Y"``. Writing the
    green version the way blue's was written keeps each provider's own format.
    """
    prefix = "v" if str(template).strip().startswith("v") else ""
    if parse_version(template).patch is not None:
        return f"{prefix}{version.major}.{version.minor}.{version.patch or 0}"
    return f"{prefix}{version.major}.{version.minor}"
