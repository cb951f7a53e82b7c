"""An SVG chart of the Keepa token balance over time, drawn on the server from the token audit trail.

The admin machines have no internet access, so the chart needs no script and
no chart library: the view hands the template ready-made coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

WIDTH = 840
HEIGHT = 240
# Room for the balance labels on the left and the time labels below, in SVG units.
LEFT = 56
RIGHT = 12
TOP = 12
BOTTOM = 28
# Events are grouped into this many time buckets; each keeps its lowest and highest balance,
# so a short dip into the deficit still shows however many events there were.
BUCKETS = 400


@dataclass
class BalanceChart:
    width: int = WIDTH
    height: int = HEIGHT
    points: str = ""
    event_count: int = 0
    y_labels: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    zero_y: float | None = None
    floor_y: float | None = None
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM
    lowest: float | None = None
    highest: float | None = None


def balance_chart(
    samples: list[tuple[datetime, float]],
    deficit_floor: float,
    *,
    hours: int = 24,
    now: datetime | None = None,
) -> BalanceChart:
    """Lay out `samples` (time, tokens left after the event), oldest first, over the last `hours` hours."""
    now = now or timezone.now()
    start = now - timedelta(hours=hours)
    chart = BalanceChart(event_count=len(samples))
    chart.x_labels = _time_labels(start, now, hours)
    if not samples:
        return chart

    reduced = _reduce(samples, start, now)
    balances = [balance for _when, balance in reduced]
    chart.lowest, chart.highest = min(balances), max(balances)
    # The scale always shows zero and the deficit floor, so a balance near either reads at a glance.
    low = min(chart.lowest, deficit_floor, 0.0)
    high = max(chart.highest, 0.0)
    if high - low < 1:
        high = low + 1

    def y_of(balance: float) -> float:
        span = chart.plot_bottom - chart.plot_top
        return round(chart.plot_bottom - (balance - low) / (high - low) * span, 1)

    chart.points = " ".join(f"{_x_of(when, start, now):.1f},{y_of(balance)}" for when, balance in reduced)
    chart.zero_y = y_of(0.0)
    chart.floor_y = y_of(deficit_floor)
    chart.y_labels = [(y_of(value), f"{value:.0f}") for value in _balance_ticks(low, high)]
    return chart


def _x_of(when: datetime, start: datetime, now: datetime) -> float:
    fraction = (when - start).total_seconds() / max(1.0, (now - start).total_seconds())
    fraction = min(1.0, max(0.0, fraction))
    return LEFT + fraction * (WIDTH - RIGHT - LEFT)


def _reduce(samples: list[tuple[datetime, float]], start: datetime, now: datetime) -> list[tuple[datetime, float]]:
    """Keep the first, lowest, highest and last sample of each time bucket, in time order."""
    if len(samples) <= BUCKETS:
        return samples

    span = max(1.0, (now - start).total_seconds())
    buckets: dict[int, list[tuple[datetime, float]]] = {}
    for when, balance in samples:
        index = min(BUCKETS - 1, max(0, int((when - start).total_seconds() / span * BUCKETS)))
        buckets.setdefault(index, []).append((when, balance))

    reduced: list[tuple[datetime, float]] = []
    for index in sorted(buckets):
        group = buckets[index]
        kept = {group[0], min(group, key=lambda sample: sample[1]), max(group, key=lambda sample: sample[1]), group[-1]}
        reduced.extend(sorted(kept))
    return reduced


def _balance_ticks(low: float, high: float) -> list[float]:
    """Return about five round balances between `low` and `high` for the axis labels."""
    raw_step = (high - low) / 4
    magnitude = 10 ** max(0, len(str(int(raw_step))) - 1)
    step = max(1, round(raw_step / magnitude)) * magnitude
    first = (low // step) * step
    ticks = []
    value = first
    while value <= high:
        if value >= low:
            ticks.append(value)
        value += step
    return ticks


def _time_labels(start: datetime, now: datetime, hours: int) -> list[tuple[float, str]]:
    local_now = timezone.localtime(now)
    labels = []
    for hours_ago in range(hours, -1, -6):
        when = now - timedelta(hours=hours_ago)
        text = "now" if hours_ago == 0 else f"-{hours_ago} h ({timezone.localtime(when):%H:%M})"
        labels.append((_x_of(when, start, local_now), text))
    return labels
