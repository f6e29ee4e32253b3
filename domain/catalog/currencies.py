"""ISO 4217 currencies and the one rounding rule for money.

The list comes from the `iso4217` package (ISO's own published table, re-released when ISO amends
it) for codes, names and minor units; the display symbol comes from CLDR via `babel`. Currencies
without minor units in ISO's table (gold, SDR, test codes: "N.A.") cannot be billed in, so they
are not offered.

Rounding rule (the only place money is rounded): `Currency.round` rounds to the currency's minor
units, half away from zero (0.005 USD -> 0.01, 0.5 JPY -> 1), as OpenMeter's currency calculator
does (shopspring/alpacadecimal `Round`). See domain/catalog/rating.py for *what* gets rounded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Final

import iso4217
from babel.numbers import get_currency_symbol

DEFAULT_CURRENCY: Final = "USD"
# Rounding needs the amount's integer digits plus the minor units: more than the default context's
# 28 significant digits for absurd but representable amounts, which must round, not raise.
_ROUNDING: Final = Context(prec=80)


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    name: str
    symbol: str
    minor_units: int
    # 10 ** -minor_units, the quantum amounts are rounded to.
    unit: Decimal

    def round(self, amount: Decimal) -> Decimal:
        # Positional arguments: the keyword form costs more on the rating engine's hot path.
        return amount.quantize(self.unit, ROUND_HALF_UP, _ROUNDING)

    def is_rounded(self, amount: Decimal) -> bool:
        return amount == self.round(amount)

    def rest(self) -> dict[str, object]:
        return {"code": self.code, "name": self.name, "symbol": self.symbol, "subunits": self.minor_units}


@functools.cache
def _table() -> dict[str, Currency]:
    out: dict[str, Currency] = {}
    for code, row in iso4217.raw_table.items():
        minor = row.get("CcyMnrUnts")
        if not code or minor is None or not str(minor).isdigit():
            continue
        units = int(str(minor))
        try:
            symbol = get_currency_symbol(code, locale="en")
        except Exception:  # CLDR lacks a few brand-new codes; the code is a fine symbol then.
            symbol = code
        out[code] = Currency(
            code=code,
            name=str(row.get("CcyNm") or code),
            symbol=symbol,
            minor_units=units,
            unit=Decimal(1).scaleb(-units),
        )
    return dict(sorted(out.items()))


def lookup(code: str) -> Currency | None:
    """The currency with this ISO 4217 code (upper case), or None."""
    return _table().get(code)


def get(code: str) -> Currency:
    currency = lookup(code)
    if currency is None:
        raise KeyError(code)
    return currency


def list_currencies() -> list[Currency]:
    return list(_table().values())


def data_version() -> str:
    """The ISO table's publication, e.g. 1.16.20260101 (for operators checking freshness)."""
    return str(iso4217.__version__)
