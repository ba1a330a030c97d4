"""Small charts drawn on the server as SVG geometry for the templates.

Each function returns a :class:`Chart`: shapes with coordinates in the
chart's own viewBox, axis labels, a legend, and the same numbers as a
table, which the page offers for screen readers and for copying. No
script and no style attribute is needed to draw them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

WIDTH = 600
HEIGHT = 170
LEFT = 48
RIGHT = 8
TOP = 10
BOTTOM = 24


@dataclass(frozen=True)
class Shape:
    """A bar (``rect``), a line (``line``, with ``points``) or a ``dot``."""

    series: str
    kind: str = "rect"
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    points: str = ""
    label: str = ""


@dataclass(frozen=True)
class Chart:
    """Everything a template needs to draw one chart and its data table."""

    title: str
    description: str
    unit: str
    y_max: float
    shapes: list[Shape]
    x_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    table_head: list[str]
    table_rows: list[list[str]]
    width: int = WIDTH
    height: int = HEIGHT
    empty: bool = False
    plot: dict[str, float] = field(
        default_factory=lambda: {
            "left": LEFT,
            "right": WIDTH - RIGHT,
            "top": TOP,
            "bottom": HEIGHT - BOTTOM,
        }
    )


def stacked_minutes(
    title: str,
    description: str,
    minutes: Sequence[int],
    series: Mapping[str, Sequence[int]],
    labels: Mapping[str, str],
) -> Chart:
    """Stacked bars of counts per minute, one stack per entry of ``minutes``."""
    totals = [
        sum(values[index] for values in series.values())
        for index in range(len(minutes))
    ]
    y_max = float(max(totals, default=0) or 1)
    slot = (WIDTH - LEFT - RIGHT) / max(len(minutes), 1)
    shapes: list[Shape] = []
    for index, minute in enumerate(minutes):
        base = float(HEIGHT - BOTTOM)
        for name, values in series.items():
            count = values[index]
            if not count:
                continue
            height = count / y_max * (HEIGHT - TOP - BOTTOM)
            base -= height
            shapes.append(
                Shape(
                    series=name,
                    x=round(LEFT + index * slot + slot * 0.1, 2),
                    y=round(base, 2),
                    width=round(slot * 0.8, 2),
                    height=round(height, 2),
                    label=f"{_clock(minute)}: {count} {labels[name]}",
                )
            )
    rows = [
        [_clock(minute), *(str(values[index]) for values in series.values())]
        for index, minute in enumerate(minutes)
        if totals[index]
    ]
    return Chart(
        title=title,
        description=description,
        unit="per minute",
        y_max=y_max,
        shapes=shapes,
        x_labels=_x_labels(minutes, slot),
        legend=[(name, labels[name]) for name in series],
        table_head=["minute (UTC)", *(labels[name] for name in series)],
        table_rows=rows,
        empty=not any(totals),
    )


def minute_lines(
    title: str,
    description: str,
    minutes: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    labels: Mapping[str, str],
    unit: str,
) -> Chart:
    """Lines of one value per minute per series; ``None`` leaves a gap."""
    present = [value for values in series.values() for value in values if value]
    y_max = float(max(present, default=0.0) or 1.0)
    slot = (WIDTH - LEFT - RIGHT) / max(len(minutes), 1)
    shapes: list[Shape] = []
    for name, values in series.items():
        run: list[str] = []
        for index, value in enumerate([*values, None]):
            if value is None:
                if len(run) > 1:
                    shapes.append(Shape(series=name, kind="line", points=" ".join(run)))
                run = []
                continue
            x = LEFT + index * slot + slot / 2
            y = HEIGHT - BOTTOM - value / y_max * (HEIGHT - TOP - BOTTOM)
            run.append(f"{x:.1f},{y:.1f}")
            # A dot per value, so a lone minute still shows.
            shapes.append(
                Shape(
                    series=name,
                    kind="dot",
                    x=round(x, 1),
                    y=round(y, 1),
                    label=f"{_clock(minutes[index])}: {value:.1f} {unit}",
                )
            )
    rows = [
        [_clock(minute), *(_number(values[index]) for values in series.values())]
        for index, minute in enumerate(minutes)
        if any(values[index] is not None for values in series.values())
    ]
    return Chart(
        title=title,
        description=description,
        unit=unit,
        y_max=y_max,
        shapes=shapes,
        x_labels=_x_labels(minutes, slot),
        legend=[(name, labels[name]) for name in series],
        table_head=["minute (UTC)", *(f"{labels[name]} ({unit})" for name in series)],
        table_rows=rows,
        empty=not rows,
    )


def horizontal_bars(
    title: str, description: str, items: Sequence[tuple[str, str, float, str]]
) -> Chart:
    """One bar per (series, label, value, caption), longest value full width."""
    y_max = float(max((value for _, _, value, _ in items), default=0.0) or 1.0)
    row_height = (HEIGHT - TOP - BOTTOM) / max(len(items), 1)
    shapes = [
        Shape(
            series=name,
            x=LEFT + 72,
            y=round(TOP + index * row_height + row_height * 0.15, 2),
            width=round(value / y_max * (WIDTH - LEFT - 72 - RIGHT - 120), 2),
            height=round(row_height * 0.7, 2),
            label=f"{label}: {caption}",
        )
        for index, (name, label, value, caption) in enumerate(items)
    ]
    return Chart(
        title=title,
        description=description,
        unit="",
        y_max=y_max,
        shapes=shapes,
        x_labels=[],
        legend=[(name, label) for name, label, _, _ in items],
        table_head=["status", "figure"],
        table_rows=[[label, caption] for _, label, _, caption in items],
        empty=not any(value for _, _, value, _ in items),
    )


def _x_labels(minutes: Sequence[int], slot: float) -> list[tuple[float, str]]:
    if not minutes:
        return []
    step = max(1, len(minutes) // 6)
    return [
        (round(LEFT + index * slot + slot / 2, 1), _clock(minute))
        for index, minute in enumerate(minutes)
        if index % step == 0
    ]


def _clock(minute: int) -> str:
    seconds = minute * 60
    return f"{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
