"""The geometry of the timeline picture: one lane per version, a bar per revision, rollbacks marked.

Pure arithmetic, so it is tested without a browser; render_html turns the shapes into inline SVG.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelledger.report.schema import DeploymentReport, Window

# Okabe-Ito: distinguishable with colour-vision deficiencies and in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
ROLLBACK_COLOUR = "#C0392B"
WIDTH, LABEL_WIDTH, RIGHT_MARGIN, LANE_HEIGHT, AXIS_HEIGHT, TOP = 1000.0, 190.0, 40.0, 30.0, 34.0, 14.0
TICKS = 6


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    revision: int
    stable: bool
    known_end: bool
    title: str


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Lane:
    y: float
    version: str
    colour: str


@dataclass(frozen=True)
class Picture:
    width: float
    height: float
    plot_left: float
    plot_right: float
    plot_bottom: float
    lanes: list[Lane]
    bars: list[Bar]
    rollbacks: list[Marker]
    ticks: list[Tick]


def _span(deployment: DeploymentReport, window: Window) -> tuple[datetime, datetime]:
    starts = [t.start for t in deployment.timeline]
    start = window.since or (min(starts) if starts else window.until - timedelta(hours=1))
    end = window.until
    if end <= start:
        end = start + timedelta(seconds=1)
    return start, end


def _tick_label(value: datetime, span: timedelta) -> str:
    value = value.astimezone(UTC)
    if span <= timedelta(hours=6):
        return value.strftime("%H:%M:%S")
    if span <= timedelta(days=3):
        return value.strftime("%m-%d %H:%M")
    return value.strftime("%Y-%m-%d")


def picture(deployment: DeploymentReport, window: Window) -> Picture:
    start, end = _span(deployment, window)
    seconds = (end - start).total_seconds()
    plot_width = WIDTH - LABEL_WIDTH - RIGHT_MARGIN

    def x_of(at: datetime) -> float:
        clamped = min(max(at, start), end)
        return LABEL_WIDTH + plot_width * (clamped - start).total_seconds() / seconds

    versions: list[str] = []
    for interval in deployment.timeline:
        if interval.version not in versions:
            versions.append(interval.version)
    lanes = [
        Lane(TOP + i * LANE_HEIGHT, version, PALETTE[i % len(PALETTE)]) for i, version in enumerate(versions)
    ]
    lane_of = {lane.version: lane for lane in lanes}
    bars: list[Bar] = []
    following = [*deployment.timeline[1:], None]
    for interval, after in zip(deployment.timeline, following, strict=True):
        lane = lane_of[interval.version]
        until = interval.end or (after.start if after is not None else end)
        left, right = x_of(interval.start), x_of(until)
        bars.append(
            Bar(
                x=left,
                y=lane.y + 4,
                width=max(right - left, 2.0),
                height=LANE_HEIGHT - 8,
                colour=lane.colour,
                revision=interval.revision,
                stable=interval.stable,
                known_end=interval.end_known,
                title=f"revision {interval.revision}: {interval.version} ({interval.cause} by "
                f"{interval.actor}){' — stable' if interval.stable else ''}",
            )
        )
    rollbacks = [
        Marker(
            x_of(change.at),
            f"r{change.revision}",
            f"revision {change.revision}: {change.cause} by {change.actor}",
        )
        for change in deployment.changes
        if change.cause != "Deploy" and start <= change.at <= end
    ]
    plot_bottom = TOP + max(len(lanes), 1) * LANE_HEIGHT
    ticks = [
        Tick(
            LABEL_WIDTH + plot_width * i / (TICKS - 1),
            _tick_label(start + (end - start) * i / (TICKS - 1), end - start),
        )
        for i in range(TICKS)
    ]
    return Picture(
        WIDTH,
        plot_bottom + AXIS_HEIGHT,
        LABEL_WIDTH,
        WIDTH - RIGHT_MARGIN,
        plot_bottom,
        lanes,
        bars,
        rollbacks,
        ticks,
    )
