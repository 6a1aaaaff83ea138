"""Generate short synthetic video clips with PyAV, for the demo, tests and benchmarks.

Each frame shows a moving colour gradient with a frame-number bar, so that a decoded frame
can be traced back to its index (``frame_index_of``) and codecs have real motion to encode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Frame index is written as 12 bits into 12 vertical bars in the top band of the frame.
_INDEX_BITS = 12


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """Return frame ``index`` of the synthetic pattern as an RGB uint8 array (H, W, 3)."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (x * 255 // max(width - 1, 1) + index * 4) % 256
    frame[..., 1] = (y * 255 // max(height - 1, 1) + index * 2) % 256
    frame[..., 2] = (index * 8) % 256
    band = max(height // 8, 2)
    # Bar edges at fractions of the width, so the bars scale with any resize of the frame.
    edges = [round(bit * width / _INDEX_BITS) for bit in range(_INDEX_BITS + 1)]
    for bit in range(_INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[:band, edges[bit] : max(edges[bit + 1], edges[bit] + 1), :] = value
    return frame


def frame_index_of(frame: np.ndarray) -> int:
    """Read back the index written by ``synthetic_frame`` (robust to resizing and lossy codecs)."""
    height, width = frame.shape[:2]
    band = max(height // 8, 2)
    bar = width / _INDEX_BITS
    index = 0
    for bit in range(_INDEX_BITS):
        x0, x1 = int(bit * bar + bar * 0.3), int(bit * bar + bar * 0.7)
        y1 = max(int(band * 0.7), 1)
        if frame[:y1, x0 : max(x1, x0 + 1)].mean() > 127:
            index |= 1 << bit
    return index


def make_clip(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    width: int = 160,
    height: int = 120,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """Encode a synthetic clip and return its path; the container follows the file extension."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nframes = max(round(seconds * fps), 1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = options
        for index in range(nframes):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(index, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
