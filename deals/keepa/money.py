"""Formatting of Keepa prices, which are integers in the smallest currency unit (cents; whole yen)."""

from __future__ import annotations

from dataclasses import dataclass

from deals.keepa.domains import get_domain


@dataclass(frozen=True)
class CurrencyFormat:
    decimals: int
    symbol: str
    symbol_after: bool
    thousands: str
    decimal_mark: str
    indian_grouping: bool = False


CURRENCY_FORMATS: dict[str, CurrencyFormat] = {
    "USD": CurrencyFormat(2, "$", False, ",", "."),
    "GBP": CurrencyFormat(2, "£", False, ",", "."),
    "EUR": CurrencyFormat(2, " €", True, ".", ","),
    "JPY": CurrencyFormat(0, "￥", False, ",", "."),
    "CAD": CurrencyFormat(2, "CA$", False, ",", "."),
    "INR": CurrencyFormat(2, "₹", False, ",", ".", indian_grouping=True),
    "MXN": CurrencyFormat(2, "MX$", False, ",", "."),
    "BRL": CurrencyFormat(2, "R$ ", False, ".", ","),
}

# French writes a narrow no-break space between thousands; the other euro marketplaces use a dot.
FRENCH_THOUSANDS = "\u202f"


def format_price(amount: int | None, domain_id: int) -> str | None:
    """Format an amount in the smallest unit of the marketplace's currency, e.g. 123456 on domain 3 as "1.234,56 €".

    Returns None for a missing amount and for -1 or any negative amount (no offer).
    """
    if amount is None or isinstance(amount, bool) or amount < 0:
        return None
    domain = get_domain(domain_id)
    style = CURRENCY_FORMATS[domain.currency]
    thousands = FRENCH_THOUSANDS if domain.code == "fr" else style.thousands
    return format_amount(int(amount), style, thousands)


def format_amount(amount: int, style: CurrencyFormat, thousands: str) -> str:
    whole, fraction = divmod(amount, 10**style.decimals)
    digits = _group_digits(str(whole), thousands, style.indian_grouping)
    number = digits if style.decimals == 0 else f"{digits}{style.decimal_mark}{fraction:0{style.decimals}d}"
    return f"{number}{style.symbol}" if style.symbol_after else f"{style.symbol}{number}"


def _group_digits(digits: str, separator: str, indian_grouping: bool) -> str:
    if indian_grouping and len(digits) > 3:
        # India groups the last three digits, then pairs: 12,34,567.
        head, tail = digits[:-3], digits[-3:]
        pairs = []
        while len(head) > 2:
            pairs.insert(0, head[-2:])
            head = head[:-2]
        return separator.join([head, *pairs, tail])

    groups = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    return separator.join([digits, *groups])
