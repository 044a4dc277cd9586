"""Kubernetes resource quantities (``500m``, ``2``, ``8Gi``, ``128G``, ``1.5e3``) as exact numbers.

Capacity figures come from annotations and machine configs people write by hand,
so every suffix the apiserver accepts is accepted here: the binary ones (Ki .. Ei),
the decimal ones (n, u, m, k, M .. E) and a decimal exponent. Arithmetic is done in
:class:`~fractions.Fraction` so ``0.1`` CPU is exactly 100 millicores; callers round
once, at the unit they report in.
"""

from __future__ import annotations

import re
from fractions import Fraction

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"  # the number
    r"(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$"  # a decimal exponent, or a suffix
)


MAX_EXPONENT = 30


def parse_quantity(value: str | int | float) -> Fraction:
    """The quantity's value in base units (cores, bytes); ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(str(value))
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f'{value!r} is not a Kubernetes quantity; write it as e.g. "2", "500m", "8Gi" or "16G"')
    number, exponent, suffix = match.groups()
    amount = Fraction(number)
    if exponent:
        power = int(exponent[1:])
        # The apiserver keeps quantities within int64 at nano precision; an exponent past that is a typo,
        # and 10**huge would take the process down with it (annotations are written by hand).
        if abs(power) > MAX_EXPONENT:
            raise ValueError(f"{value!r}: exponent {power} is out of range (at most {MAX_EXPONENT} either way)")
        return amount * Fraction(10) ** power
    if suffix in _BINARY:
        return amount * _BINARY[suffix]
    return amount * _DECIMAL[suffix or ""]


def to_millis(value: str | int | float) -> int:
    """CPU in millicores, rounded up as the apiserver does for sub-milli values; ValueError if it does not parse."""
    millis = parse_quantity(value) * 1000
    return -(-millis.numerator // millis.denominator)


def to_bytes(value: str | int | float) -> int:
    """Memory in bytes, rounded up; ValueError if it does not parse."""
    amount = parse_quantity(value)
    return -(-amount.numerator // amount.denominator)
