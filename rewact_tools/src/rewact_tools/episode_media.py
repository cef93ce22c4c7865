"""The PNG plot and MP4 video of one episode that every visualisation script writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from rewact_tools.plotting import Curve, PanelSpec, episode_video_frames, save_plot
from rewact_tools.video import to_uint8_rgb, write_mp4

if TYPE_CHECKING:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset


def episode_positions(dataset: LeRobotDataset, episode: int) -> np.ndarray:
    """Positions (for `dataset[i]`) of the episode's frames in frame order."""
    frames = dataset.hf_dataset.with_format(None).select_columns(["episode_index", "frame_index"]).to_pandas()
    rows = frames[frames["episode_index"] == episode].sort_values("frame_index")
    if rows.empty:
        raise KeyError(f"episode {episode} is not loaded in dataset {dataset.repo_id}")
    return rows.index.to_numpy()


def episode_camera_images(dataset: LeRobotDataset, episode: int) -> Iterator[list[np.ndarray]]:
    """Per frame of the episode, its camera images (dataset order of cameras) as RGB uint8."""
    cameras = list(dataset.meta.camera_keys)
    for position in episode_positions(dataset, episode):
        item = dataset[int(position)] if cameras else {}
        yield [to_uint8_rgb(item[key].numpy()) for key in cameras]


def write_episode_media(
    dataset: LeRobotDataset,
    episode: int,
    spec: PanelSpec,
    curves: Sequence[Curve],
    stem: Path,
    video: bool = True,
) -> list[Path]:
    """Write `<stem>.png` and (with `video`) `<stem>.mp4`; return the paths written.

    The video has one frame per episode frame at the dataset's fps, the cameras over the curves
    drawn up to that frame.
    """
    length = len(episode_positions(dataset, episode))
    if any(len(curve.values) != length for curve in curves):
        raise ValueError(
            f"episode {episode} has {length} frames but the curves have {[len(c.values) for c in curves]}"
        )
    png = stem.with_suffix(".png")
    save_plot(png, spec, curves)
    written = [png]
    if video:
        mp4 = stem.with_suffix(".mp4")
        frames = episode_video_frames(episode_camera_images(dataset, episode), spec, curves)
        progress = tqdm(frames, total=length, desc=f"episode {episode} video", unit="frame", leave=False)
        write_mp4(mp4, progress, fps=dataset.meta.fps)
        written.append(mp4)
    return written
