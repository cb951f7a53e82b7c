"""Amazon marketplaces by Keepa domain id, with their host and currency."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    id: int
    code: str
    host: str
    currency: str


DOMAINS: dict[int, Domain] = {
    domain.id: domain
    for domain in (
        Domain(1, "com", "www.amazon.com", "USD"),
        Domain(2, "co.uk", "www.amazon.co.uk", "GBP"),
        Domain(3, "de", "www.amazon.de", "EUR"),
        Domain(4, "fr", "www.amazon.fr", "EUR"),
        Domain(5, "co.jp", "www.amazon.co.jp", "JPY"),
        Domain(6, "ca", "www.amazon.ca", "CAD"),
        # Keepa leaves id 7 unused.
        Domain(8, "it", "www.amazon.it", "EUR"),
        Domain(9, "es", "www.amazon.es", "EUR"),
        Domain(10, "in", "www.amazon.in", "INR"),
        Domain(11, "com.mx", "www.amazon.com.mx", "MXN"),
        Domain(12, "com.br", "www.amazon.com.br", "BRL"),
    )
}


def get_domain(domain_id: int) -> Domain:
    """Return the marketplace for a Keepa domain id, or raise ValueError naming the id."""
    try:
        return DOMAINS[domain_id]
    except (KeyError, TypeError):
        known = ", ".join(f"{domain.id} ({domain.code})" for domain in DOMAINS.values())
        raise ValueError(f"Keepa domain id {domain_id!r} is not valid: use one of {known}.") from None


def product_url(asin: str, domain_id: int) -> str:
    return f"https://{get_domain(domain_id).host}/dp/{asin}"
