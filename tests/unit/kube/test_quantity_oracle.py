"""Quantities checked against an independent reader: the ``kubernetes`` client's ``parse_quantity``.

Hypothesis writes quantities from the apiserver's grammar (sign, number, then a
binary or decimal suffix or a decimal exponent) small enough for the oracle's
28-digit decimals to be exact, and the two readers must agree to the last digit.
The forms the oracle reads loosely (``K``, ``Infinity``) are not generated.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as oracle

from bluegreen.kube import quantity

_digits = st.text("0123456789", min_size=1, max_size=4)
_number = st.one_of(
    _digits,
    st.builds(lambda whole, part: f"{whole}.{part}", _digits, _digits),
    st.builds(lambda part: f".{part}", _digits),
    st.builds(lambda whole: f"{whole}.", _digits),
)
_suffix = st.one_of(
    st.sampled_from(["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]),
    st.builds(lambda e, sign, power: f"{e}{sign}{power}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
              st.integers(min_value=0, max_value=18)),
)


@given(sign=st.sampled_from(["", "+", "-"]), number=_number, suffix=_suffix)
def test_every_form_of_the_grammar_reads_as_the_kubernetes_client_reads_it(sign: str, number: str,
                                                                          suffix: str) -> None:
    text = f"{sign}{number}{suffix}"
    expected = Fraction(oracle(text))
    assert Fraction(quantity.parse_quantity(text)) == expected
    assert quantity.to_millis(text) == -(-expected * 1000 // 1)
    assert quantity.to_bytes(text) == -(-expected // 1)


def test_the_letter_e_alone_is_exa_and_followed_by_digits_an_exponent() -> None:
    assert quantity.to_bytes("2E") == 2 * 10 ** 18
    assert quantity.to_bytes("2E3") == 2000
    assert quantity.to_millis("25e-3") == 25
    assert oracle("25e-3") == Decimal("0.025")
