"""MP4 writing with PyAV (its wheels bundle FFmpeg, so no system install is needed).

H.264 (`libx264`) when the bundled FFmpeg has it, else MPEG-4 Part 2, which every build has. Both
need even frame sizes in yuv420p, so frames are padded by one pixel where needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from rewact_tools.atomic import write_atomically

CODECS = ("libx264", "mpeg4")


def _pick_codec() -> str:
    import av

    for codec in CODECS:
        try:
            av.codec.Codec(codec, "w")
        except (av.codec.codec.UnknownCodecError, ValueError):
            continue
        return codec
    raise RuntimeError(f"PyAV's FFmpeg has none of the video encoders {CODECS}")


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """The frame with one black row/column appended where its height/width is odd."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 HxWx3 array from a HxWx3 or CxHxW image, float in [0, 1] or uint8."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected a 3-D image, got shape {image.shape}")
    if image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.transpose(image, (1, 2, 0))
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return image


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Encode RGB uint8 frames (all the same size) into an MP4 at `path`; returns the frame count.

    Written atomically (`rewact_tools.atomic`), so a failure leaves no partial video.
    """
    rate = Fraction(fps).limit_denominator(1000)
    count = 0

    def encode(temporary: Path) -> None:
        import av

        nonlocal count
        size: tuple[int, int] | None = None
        with av.open(str(temporary), mode="w", format="mp4") as container:
            stream = None
            for frame in frames:
                frame = pad_to_even(to_uint8_rgb(frame))
                if stream is None:
                    size = frame.shape[:2]
                    stream = container.add_stream(_pick_codec(), rate=rate)
                    stream.height, stream.width = size
                    stream.pix_fmt = "yuv420p"
                elif frame.shape[:2] != size:
                    raise ValueError(f"video frame {count} has size {frame.shape[:2]}, the first had {size}")
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)

    write_atomically(path, encode)
    return count
