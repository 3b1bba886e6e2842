"""How a number is printed next to the threshold that judges it."""

from __future__ import annotations

#: The most decimals (or significant digits) :func:`beside` adds: beyond float64's 17, every
#: difference shows.
_MOST_DIGITS = 17


def beside(value: float, threshold: float, spec: str = ".3g") -> str:
    """``value`` formatted with ``spec`` ('.3f', '.4g'), with as many more digits as it takes
    for the printed number to lie on the same side of ``threshold`` as the value itself: a
    condition of 1.0997 next to a bound of 1.1 prints '1.0997', not '1.1'; a value equal to
    the threshold prints as it is."""
    kind, digits = spec[-1], int(spec[1:-1])
    side = (value > threshold) - (value < threshold)
    for places in range(digits, _MOST_DIGITS + 1):
        shown = f"{value:.{places}{kind}}"
        printed = float(shown)
        if (printed > threshold) - (printed < threshold) == side:
            return shown
    return repr(value)
