"""Which traffic shares a router made of whole targets can reach.

TheFork's way of moving traffic through one ELBv2 target group: register one
green target, deregister one blue target, and so on. With equal targets the
share is ``green / (blue + green)``: 3 blue and 3 green give 25, 33, 50, 66,
75, 100 %. The spec refuses steps this path cannot reach (naming the ones it
can), and the router walks this same path; both use these functions.
"""

from __future__ import annotations


def registration_path(*, blue_targets: int, green_targets: int) -> list[tuple[int, int]]:
    """The reachable (registered blue, registered green) states, from all blue to all green."""
    if blue_targets < 1 or green_targets < 1:
        raise ValueError("TargetRegistration needs at least one blue and one green target")
    blue, green = blue_targets, 0
    states = [(blue, green)]
    registered_last = False
    while green < green_targets or blue > 0:
        if green < green_targets and (blue <= 1 or not registered_last):
            green += 1
            registered_last = True
        else:
            blue -= 1
            registered_last = False
        states.append((blue, green))
    return states


def green_share(blue: int, green: int) -> int:
    """Percent of green among ``blue + green`` equal targets, rounded down."""
    if blue + green == 0:
        raise ValueError("no targets")
    return 100 * green // (blue + green)


def reachable_shares(*, blue_targets: int, green_targets: int) -> list[int]:
    """Every green percent the registration path passes through, in order."""
    path = registration_path(blue_targets=blue_targets, green_targets=green_targets)
    return sorted({green_share(blue, green) for blue, green in path})
