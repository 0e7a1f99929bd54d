"""Credits are integers: 1 credit = 1,000,000 micro-credits. No float ever touches a balance."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICRO = 1_000_000
# Far below BIGINT's 9.2e18 micro-credits, so no sum of sane entries can overflow a column.
MAX_AMOUNT = 10**9 * MICRO  # one billion credits
MAX_CREDITS = MAX_AMOUNT // MICRO  # the same bound, in credits (for request schemas)
_MAX_DIGITS = 9  # digits before the point of the largest amount (the exponent bound above)


def to_micro(credits: int | float | str | Decimal) -> int:
    """Exact conversion of a credit amount (as written by a person) to micro-credits.

    Floats are read through their shortest decimal repr (TOML's `7.5` is exactly 7.5 credits);
    anything finer than one micro-credit is refused rather than rounded.
    """
    try:
        value = Decimal(str(credits)) if not isinstance(credits, Decimal) else credits
    except InvalidOperation:
        raise ValueError(f"not a number: {credits!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {credits!r}")
    # Checked on the exponent before any arithmetic: 1e999999999 would overflow the decimal
    # context, and 1e-999999999 would underflow to a silent zero.
    if value and value.adjusted() > _MAX_DIGITS:
        raise ValueError(f"{credits} credits is more than one amount may move")
    if value and value.adjusted() < -6:
        raise ValueError(f"{credits} credits is finer than one micro-credit")
    micro = value * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"{credits} credits is finer than one micro-credit")
    if abs(micro) > MAX_AMOUNT:
        raise ValueError(f"{credits} credits is more than one amount may move")
    return int(micro)


def format_credits(micro: int) -> str:
    """Micro-credits as a decimal credit string, e.g. 1500000 -> '1.5'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}" + (f".{frac:06d}".rstrip("0") if frac else "")


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
