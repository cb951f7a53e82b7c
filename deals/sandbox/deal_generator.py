"""Generation of one sandbox deal object from (seed, domain, index).

Valid deals carry every quirk dealsite must survive: HTML, scripts and entities
in titles, accents, CJK and emoji, -1 prices, arrays shorter than the price
type list, both `image` encodings, category ids above 2**31, the unknown root
categories 0 and 2**63 - 1, lightning deals and warehouse deals. A fixed share
of indexes yields malformed objects instead.
"""

from __future__ import annotations

import random
import string
from typing import Any

from deals.keepa.images import encode_image_name

PRICE_TYPE_COUNT = 36
DATE_RANGE_COUNT = 4
UNKNOWN_ROOT_CATEGORY = 9_223_372_036_854_775_807

# Real Amazon.com root categories, some above 2**31, plus the two "unknown" values.
ROOT_CATEGORIES = [
    172282, 283155, 1055398, 165793011, 3760901, 2619525011, 16310101, 2972638011, 3375251, 7141123011,
    UNKNOWN_ROOT_CATEGORY, 0,
]
SUB_CATEGORIES = [3000000011, 16225007011, 2_147_483_648, 1292115011, 541966, 172541, 979832011, 11057241]

TITLES = [
    "Wireless Earbuds, Bluetooth 5.3 with Charging Case",
    "<b>Bestseller</b> Stainless Steel Water Bottle 750 ml",
    "Kitchen Scale <script>alert(1)</script> Digital 5 kg",
    "Tom &amp; Jerry: The Complete Collection &quot;Deluxe&quot; &#8211; DVD",
    "Crème brûlée Torch – Professional Küchen-Brenner",
    "日本製 ステンレス 包丁 三徳 165mm",
    "LED Desk Lamp 💡 Dimmable, USB-C 🔌",
    "Café Mocha Pods (Pack of 50) — Édition Spéciale",
    "Robot Vacuum <i>Slim</i> &lt;2.9 inch&gt; Self-Charging",
    "Ergonomic Office Chair with Lumbar Support",
    "中文 蓝牙 音箱 Portable Speaker 🎵",
    "Garden Hose 30 m <img src=x onerror=alert(2)>",
]
WAREHOUSE_COMMENTS = [
    "Item will come in original packaging. Packaging may be damaged.",
    "<b>Minor</b> scratches on the side &amp; top.",
    "Box opened; all accessories included. <br>Manual missing.",
    "Petite rayure sur le côté 🙂",
]
# Keepa warehouse conditions: 2 like new, 3 very good, 4 good, 5 acceptable.
WAREHOUSE_CONDITIONS = [2, 3, 4, 5]

# Every MALFORMED_PERIOD-th index, shifted by MALFORMED_OFFSET, is malformed: about 4 %.
MALFORMED_PERIOD = 25
MALFORMED_OFFSET = 11
MALFORMED_KINDS = [
    "not_an_object_string", "not_an_object_list", "null", "missing_asin", "invalid_asin",
    "asin_wrong_type", "current_wrong_type", "creation_date_wrong_type", "negative_creation_date",
    "price_out_of_range", "title_wrong_type", "future_creation_date",
]
ASIN_ALPHABET = string.ascii_uppercase + string.digits


def is_malformed_index(index: int) -> bool:
    return index % MALFORMED_PERIOD == MALFORMED_OFFSET


def make_asin(index: int, rng: random.Random, namespace: str = "B0") -> str:
    """Return a unique ASIN: the namespace, the index in base 36 (5 characters), 3 random characters."""
    digits = ""
    value = index
    for _ in range(5):
        value, remainder = divmod(value, 36)
        digits = ASIN_ALPHABET[(remainder + 26) % 36] + digits
    return namespace + digits + "".join(rng.choice(ASIN_ALPHABET) for _ in range(3))


def generate_deal(rng: random.Random, asin: str, creation_date: int, now_minutes: int, domain_id: int) -> dict:
    """Return a well-formed deal object. creation_date and now_minutes are Keepa minutes."""
    price_scale = 100 if domain_id == 5 else 1  # yen have no subunit, so amounts are larger
    list_price = rng.randint(999, 29999) * price_scale
    current_price = int(list_price * rng.uniform(0.35, 0.95))

    current = _price_array(rng, current_price, list_price)
    deal: dict[str, Any] = {
        "asin": asin,
        "parentAsin": rng.choice([None, "", asin, "B0PARENT" + asin[-2:]]),
        "title": rng.choice(TITLES),
        "rootCat": rng.choice(ROOT_CATEGORIES),
        "categories": rng.sample(SUB_CATEGORIES, rng.randint(1, 3)),
        "image": _image(rng, asin),
        "current": current,
        "avg": [_price_array(rng, int(current_price * 1.2), list_price) for _ in range(rng.randint(1, 4))],
        "delta": [_delta_array(rng, price_scale) for _ in range(rng.randint(1, 4))],
        "deltaPercent": [_percent_array(rng) for _ in range(rng.randint(1, 4))],
        "deltaLast": _delta_array(rng, price_scale),
        "currentSince": [rng.choice([-1, creation_date - rng.randint(0, 5000)]) for _ in range(len(current))],
        "creationDate": creation_date,
        "lastUpdate": min(now_minutes, creation_date + rng.randint(0, 600)),
        "lightningEnd": 0,
        "warehouseCondition": 0,
        "warehouseConditionComment": None,
    }

    kind = rng.random()
    if kind < 0.1:
        deal["lightningEnd"] = now_minutes + rng.randint(10, 360)
    elif kind < 0.2:
        deal["warehouseCondition"] = rng.choice(WAREHOUSE_CONDITIONS)
        deal["warehouseConditionComment"] = rng.choice(WAREHOUSE_COMMENTS)
    return deal


def generate_malformed(index: int, rng: random.Random, asin: str, creation_date: int, domain_id: int) -> Any:
    """Return a malformed deal object of the kind chosen by `index`."""
    kind = MALFORMED_KINDS[(index // MALFORMED_PERIOD) % len(MALFORMED_KINDS)]
    if kind == "not_an_object_string":
        return f"deal {asin}"
    if kind == "not_an_object_list":
        return [asin, creation_date]
    if kind == "null":
        return None

    deal = generate_deal(rng, asin, creation_date, creation_date, domain_id)
    deal["sandboxDefect"] = kind
    breakage = {
        "missing_asin": lambda: deal.pop("asin"),
        "invalid_asin": lambda: deal.update(asin="B0-" + asin[3:6]),
        "asin_wrong_type": lambda: deal.update(asin=12345),
        "current_wrong_type": lambda: deal.update(current="1999,2999"),
        "creation_date_wrong_type": lambda: deal.update(creationDate="yesterday"),
        "negative_creation_date": lambda: deal.update(creationDate=-5),
        "price_out_of_range": lambda: deal.update(current=[-7, 10**15, -3]),
        "title_wrong_type": lambda: deal.update(title={"text": "not a string"}),
        "future_creation_date": lambda: deal.update(creationDate=creation_date + 10**8),
    }
    breakage[kind]()
    return deal


def _price_array(rng: random.Random, price: int, list_price: int) -> list[int]:
    length = rng.choice([1, 4, 9, 11, 17, 19, 30, PRICE_TYPE_COUNT])
    values = []
    for price_type in range(length):
        if price_type == 3:
            values.append(rng.choice([-1, rng.randint(1, 500_000)]))  # sales rank
        elif price_type == 4:
            values.append(list_price)
        elif price_type == 16:
            values.append(rng.choice([-1, rng.randint(10, 50)]))  # rating, 45 = 4.5 stars
        elif price_type in (11, 12, 13, 14, 17, 34, 35):
            values.append(rng.randint(0, 80))  # counts
        else:
            values.append(rng.choice([-1, price, price + rng.randint(0, 500)]))
    return values


def _delta_array(rng: random.Random, price_scale: int) -> list[int]:
    return [rng.choice([0, -rng.randint(1, 5000) * price_scale]) for _ in range(rng.choice([1, 3, 9, 19]))]


def _percent_array(rng: random.Random) -> list[int]:
    return [rng.choice([0, -rng.randint(1, 90)]) for _ in range(rng.choice([1, 3, 9, 19]))]


def _image(rng: random.Random, asin: str) -> Any:
    name = f"{rng.randint(41, 91)}{asin[-5:]}L._SL500_.jpg"
    choice = rng.random()
    if choice < 0.45:
        return name
    if choice < 0.9:
        return encode_image_name(name)
    return None
