"""Numbers printed for people: SI prefixes, energy in J/Wh/kWh, durations in s/min/h.

Every view that prints a count, an energy or a time formats it here, so a report, a prediction and
the CLI say the same thing the same way:

- :func:`si` — 3 significant digits with an SI prefix from yocto (y, 1e-24) to yotta (Y, 1e24):
  ``si(2.25e6) == "2.25M"``, ``si(1.87e18, "TOs") == "1.87E TOs"``; an integer below 1,000 prints
  exactly; beyond 1e27 the mantissa grows (``"1.5e+03Y"`` never appears);
- :func:`energy` — joules below 3,600 J with an SI prefix (``"3.2 mJ"``, ``"412 J"``, ``"1.2 kJ"``),
  then watt-hours (1 Wh = 3,600 J): ``"2.5 Wh"``, ``"14.1 kWh"``, ``"3.2 MWh"``;
- :func:`exact` — the exact value with thousands separators, for a table printed with
  ``exact=True``: ``exact(553760488702595.5) == "553,760,488,702,595.5"``; a
  :class:`~fractions.Fraction` whose decimal expansion ends (every transistor cost is a binary
  fraction) prints all its digits;
- :func:`duration` — seconds below a minute with an SI prefix (``"850 µs"``, ``"12.4 s"``), then
  ``"4.2 min"``, ``"3.1 h"``, ``"2.4 d"``.

Non-finite values print as ``nan``/``inf`` so a bad number is never hidden.
"""

from __future__ import annotations

import math
from fractions import Fraction

#: SI prefixes by power of 1000, from 1e-24 to 1e24.
PREFIXES = {-8: "y", -7: "z", -6: "a", -5: "f", -4: "p", -3: "n", -2: "µ", -1: "m", 0: "",
            1: "K", 2: "M", 3: "G", 4: "T", 5: "P", 6: "E", 7: "Z", 8: "Y"}
_LOWEST, _HIGHEST = min(PREFIXES), max(PREFIXES)
JOULES_PER_WH = 3600.0


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits and an SI prefix, followed by ``unit`` when
    given: ``si(2.25e6) == "2.25M"`` (a bare count prints kilo as ``"K"``, as the count tables
    do), ``si(1500, "B") == "1.5 kB"``. Integers below 1,000 print exactly; below 1e-24 the
    mantissa keeps its exponent."""
    value = float(value)
    sep = " " if unit else ""
    if not math.isfinite(value):
        return f"{value}{sep}{unit}"
    if value == 0 or (value == int(value) and abs(value) < 1000):
        return f"{int(value)}{sep}{unit}"
    exp3 = int(math.floor(math.log10(abs(value)) / 3))
    exp3 = max(_LOWEST, min(_HIGHEST, exp3))
    mant = value / 1000.0 ** exp3
    text = f"{mant:.{digits}g}"
    if float(text) >= 1000 and exp3 < _HIGHEST:  # 999.96 rounds up to 1e+03: next prefix
        exp3 += 1
        text = f"{value / 1000.0 ** exp3:.{digits}g}"
    if "e" in text and exp3 == _HIGHEST:  # beyond the largest prefix: plain digits
        text = f"{mant:.0f}"
    prefix = PREFIXES[exp3]
    if unit and prefix == "K":  # SI's kilo in a unit (kJ, kWh) is lower case
        prefix = "k"
    return f"{text}{sep}{prefix}{unit}"


def exact(value) -> str:
    """``value`` in full with thousands separators: ``exact(1234567) == "1,234,567"``,
    ``exact(Fraction(11, 8)) == "1.375"``. A fraction without a finite decimal expansion (a
    denominator with a prime factor other than 2 and 5) prints 12 significant digits after
    ``"≈"``; a float prints the exact value it holds."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    q = Fraction(value)
    den, twos, fives = q.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return "≈" + f"{float(q):,.12g}"
    digits = max(twos, fives)
    scaled = q.numerator * 10 ** digits // q.denominator  # exact: the denominator divides 10**digits
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10 ** digits)
    return f"{sign}{whole:,}" + (f".{frac:0{digits}d}" if digits else "")


def energy(joules: float, digits: int = 3) -> str:
    """Joules for people: ``"412 J"``, ``"2.5 Wh"``, ``"14.1 kWh"`` (module doc)."""
    joules = float(joules)
    if not math.isfinite(joules):
        return f"{joules} J"
    if abs(joules) < JOULES_PER_WH:
        return si(joules, "J", digits)
    return si(joules / JOULES_PER_WH, "Wh", digits)


def duration(seconds: float, digits: int = 3) -> str:
    """Seconds for people: ``"850 µs"``, ``"12.4 s"``, ``"4.2 min"``, ``"3.1 h"``, ``"2.4 d"``."""
    seconds = float(seconds)
    if not math.isfinite(seconds):
        return f"{seconds} s"
    a = abs(seconds)
    if a < 60:
        return si(seconds, "s", digits)
    for size, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")):
        if a >= size:
            return f"{seconds / size:.{digits}g} {unit}"
    raise AssertionError("unreachable")


__all__ = ["si", "exact", "energy", "duration", "PREFIXES", "JOULES_PER_WH"]
