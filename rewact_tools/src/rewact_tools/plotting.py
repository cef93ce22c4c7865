"""Per-episode figures and videos of value-like curves (labels, predictions, advantages).

One `CurvePanel` draws everything the scripts show: curves over the frames of an episode, optional
keypoint markers, a threshold band (a line when its edges meet) and shaded "positive" frames.
`save_plot` writes it whole as a PNG; `episode_video_frames` grows it frame by frame under the
episode's camera images for an MP4.
Matplotlib runs on its Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from rewact_tools.atomic import write_atomically  # noqa: E402
from rewact_tools.video import pad_to_even, to_uint8_rgb  # noqa: E402

CAMERA_HEIGHT = 256
PANEL_HEIGHT = 256
MIN_PANEL_WIDTH = 512
DPI = 100


@dataclass(frozen=True)
class Curve:
    """One line of the panel: a value per frame of the episode."""

    label: str
    values: np.ndarray
    color: str | None = None
    linestyle: str = "-"


@dataclass(frozen=True)
class PanelSpec:
    """What the panel shows besides the curves."""

    title: str
    ylabel: str = "value"
    ylim: tuple[float, float] | None = None
    threshold_band: tuple[float, float] | None = None
    positive: np.ndarray | None = None
    keypoints: Sequence[tuple[int, float]] = field(default_factory=tuple)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frames of each run of True in `mask`."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(start), int(stop) - 1) for start, stop in zip(edges[::2], edges[1::2], strict=True)]


class CurvePanel:
    """A matplotlib figure of the curves that can be shown whole or up to a frame."""

    def __init__(self, spec: PanelSpec, curves: Sequence[Curve], width_px: int, height_px: int):
        if not curves:
            raise ValueError("a panel needs at least one curve")
        self.length = len(curves[0].values)
        if any(len(curve.values) != self.length for curve in curves):
            raise ValueError(f"curves differ in length: {[len(curve.values) for curve in curves]}")
        self.curves = [
            Curve(c.label, np.asarray(c.values, dtype=float), c.color, c.linestyle) for c in curves
        ]
        self.figure, self.axes = plt.subplots(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
        self.frames = np.arange(self.length)
        self.lines = [
            self.axes.plot([], [], label=c.label, color=c.color, linestyle=c.linestyle, linewidth=1.6)[0]
            for c in self.curves
        ]
        self.spans = []
        if spec.positive is not None:
            for run, (first, last) in enumerate(_runs(spec.positive)):
                label = "positive frames" if run == 0 else None
                span = self.axes.axvspan(
                    first - 0.5, last + 0.5, color="tab:green", alpha=0.15, lw=0, label=label
                )
                self.spans.append((first, last, span))
        if spec.threshold_band is not None:
            low, high = spec.threshold_band
            self.axes.axhspan(low, high, color="tab:red", alpha=0.2, lw=0, label="threshold band")
            self.axes.axhline((low + high) / 2, color="tab:red", linestyle="--", linewidth=0.8)
        self.keypoints = np.asarray(spec.keypoints, dtype=float).reshape(-1, 2)
        self.keypoint_markers = self.axes.plot([], [], "o", color="black", markersize=4, label="keypoints")[0]
        if not len(self.keypoints):
            self.keypoint_markers.remove()
        self.cursor = self.axes.axvline(0, color="grey", linewidth=0.8)
        self.axes.set_xlim(-0.5, max(self.length - 0.5, 0.5))
        self.axes.set_ylim(*(spec.ylim or self._auto_ylim(spec)))
        self.axes.set_xlabel("frame")
        self.axes.set_ylabel(spec.ylabel)
        self.axes.set_title(spec.title, fontsize=10)
        self.axes.grid(alpha=0.3)
        self.axes.legend(loc="upper left", fontsize=8)
        self.figure.tight_layout()

    def _auto_ylim(self, spec: PanelSpec) -> tuple[float, float]:
        values = np.concatenate([c.values[np.isfinite(c.values)] for c in self.curves] + [np.zeros(0)])
        if spec.threshold_band is not None:
            values = np.append(values, spec.threshold_band)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        margin = 0.05 * (high - low) if high > low else 0.5
        return low - margin, high + margin

    def show_until(self, frame: int) -> None:
        """Draw the curves, shading and keypoints of frames 0..frame only."""
        stop = frame + 1
        for line, curve in zip(self.lines, self.curves, strict=True):
            line.set_data(self.frames[:stop], curve.values[:stop])
        for first, last, span in self.spans:
            span.set_visible(first <= frame)
            span.set_width(min(last, frame) - first + 1)
        if len(self.keypoints):
            shown = self.keypoints[self.keypoints[:, 0] <= frame]
            self.keypoint_markers.set_data(shown[:, 0], shown[:, 1])
        self.cursor.set_xdata([frame, frame])

    def image(self) -> np.ndarray:
        """The panel as an RGB uint8 array."""
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        plt.close(self.figure)


def save_plot(
    path: Path, spec: PanelSpec, curves: Sequence[Curve], width_px: int = 900, height_px: int = 400
) -> None:
    """Write the whole panel as a PNG."""
    panel = CurvePanel(spec, curves, width_px, height_px)
    try:
        panel.show_until(panel.length - 1)
        panel.cursor.set_visible(False)
        write_figure(panel.figure, path)
    finally:
        panel.close()


def write_figure(figure: plt.Figure, path: Path, dpi: int = DPI) -> None:
    """Save `figure` atomically (`rewact_tools.atomic`; the folder is created), in the format its
    suffix names: a killed run leaves the previous image, never a truncated one."""
    image_format = Path(path).suffix.lstrip(".") or plt.rcParams["savefig.format"]
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=dpi, format=image_format))


def _resize_to_height(image: np.ndarray, height: int) -> np.ndarray:
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _centre(image: np.ndarray, width: int) -> np.ndarray:
    left = (width - image.shape[1]) // 2
    return np.pad(image, ((0, 0), (left, width - image.shape[1] - left), (0, 0)))


def camera_row(images: Sequence[np.ndarray], height: int = CAMERA_HEIGHT) -> np.ndarray | None:
    """The cameras of one frame side by side at a common height (None without cameras)."""
    if not images:
        return None
    return np.concatenate([_resize_to_height(to_uint8_rgb(image), height) for image in images], axis=1)


def episode_video_frames(
    cameras: Iterable[Sequence[np.ndarray]], spec: PanelSpec, curves: Sequence[Curve]
) -> Iterator[np.ndarray]:
    """Video frames: each frame's cameras above the panel drawn up to that frame.

    `cameras` yields, per frame of the episode, the list of its camera images (empty without
    cameras). Every frame has the same, even, size.
    """
    panel: CurvePanel | None = None
    try:
        for frame, images in enumerate(cameras):
            row = camera_row(images)
            if panel is None:
                width = max(MIN_PANEL_WIDTH, row.shape[1] if row is not None else 0)
                width += width % 2
                panel = CurvePanel(spec, curves, width, PANEL_HEIGHT)
            panel.show_until(frame)
            plot = panel.image()
            width = max(plot.shape[1], row.shape[1] if row is not None else 0)
            parts = [_centre(plot, width)] if row is None else [_centre(row, width), _centre(plot, width)]
            yield pad_to_even(np.concatenate(parts, axis=0))
    finally:
        if panel is not None:
            panel.close()
