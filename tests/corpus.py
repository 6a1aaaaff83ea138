"""Conformance clips made at test time, FFmpeg FATE style: every frame carries its index.

Each builder writes one small file with PyAV (FFmpeg's encoders and muxers) and returns the
ground truth needed to check a decoder: ``shown[t]`` is the painted index of the picture on
screen in time slot ``t`` (slot = 1/fps). Frames are painted with
:func:`vidcap.video.synthetic.synthetic_frame`, so
:func:`vidcap.video.synthetic.frame_index_of` reads the index back from any decoded (even resized) picture.

Some clips are bent on purpose into what old muxers and encoders wrote, which FFmpeg's own
encoders never produce: DivX/Xvid "packed" B-frames in AVI (a P- and a B-VOP in one chunk,
then a placeholder N-VOP) and AVI files with empty slots (dropped frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidcap.video.synthetic import synthetic_frame

W, H = 160, 120
VOP_START = b"\x00\x00\x01\xb6"


@dataclass(frozen=True)
class Clip:
    """A generated file and what it shows."""

    path: Path
    fps: float
    shown: tuple[int, ...]  # painted index on screen in each time slot of 1/fps
    times: tuple[float, ...] = ()  # each frame's start (s), for clips without a constant rate

    def shown_at(self, fps: float, slots: int, slack: float = 0.0) -> tuple[int, ...]:
        """``shown`` for slots of ``1 / fps``: a variable-rate clip is seen through its average rate
        (``slack``: half a tick of the file's time base, as the decoder allows)."""
        if not self.times:
            return self.shown
        return shown_in_slots(list(self.times), fps, slots, slack)


def has_encoder(name: str) -> bool:
    """Whether this PyAV build can encode with ``name``."""
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def _picture(index: int, pix_fmt: str) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(synthetic_frame(index, W, H), format="rgb24").reformat(format=pix_fmt)


def encode_packets(
    codec: str, painted: list[int], fps: int, options: dict[str, str] | None = None, pix_fmt: str = "yuv420p"
) -> list[tuple[bytes, int, int, bool]]:
    """Encode one frame per entry of ``painted`` (pts 0, 1, ...): (data, pts, dts, key) in decode order."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = W, H, pix_fmt
    context.time_base, context.framerate = Fraction(1, fps), Fraction(fps)
    context.options = options or {}
    out: list[tuple[bytes, int, int, bool]] = []
    for pts, index in enumerate([*painted, None]):
        frame = None
        if index is not None:
            frame = _picture(index, pix_fmt)
            frame.pts, frame.time_base = pts, Fraction(1, fps)
        out += [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in context.encode(frame)]
    return out


def encode_clip(
    path: Path,
    codec: str,
    nframes: int,
    fps: int = 10,
    *,
    options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
    pts_of: list[int] | None = None,
    time_base: Fraction | None = None,
) -> Clip:
    """Encode frames 0..nframes-1 into ``path`` (container from the extension).

    ``pts_of`` gives each frame's pts in ``time_base`` (default: frame n at n/fps), for
    variable frame rates and gaps; ``shown`` is then worked out from those times.
    """
    time_base = time_base or Fraction(1, fps)
    pts_of = pts_of or [round(n / (fps * time_base)) for n in range(nframes)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.codec_context.time_base = time_base
        if options:
            stream.options = options
        for index, pts in enumerate(pts_of):
            frame = _picture(index, pix_fmt)
            frame.pts, frame.time_base = pts, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    times = [float(p * time_base) for p in pts_of]
    regular = all(p == round(n / (fps * time_base)) for n, p in enumerate(pts_of))
    return Clip(path, float(fps), shown_in_slots(times, fps), () if regular else tuple(times))


def shown_in_slots(
    times: list[float], fps: float, slots: int | None = None, slack: float = 0.0
) -> tuple[int, ...]:
    """Painted index on screen at each slot's instant ``i / fps``, for frames starting at ``times``
    (a frame starting up to ``slack`` seconds after an instant counts as on screen at it)."""
    slots = slots if slots is not None else round((times[-1] - times[0]) * fps) + 1
    starts = np.asarray(times) - times[0]
    instants = np.arange(slots) / fps + slack
    return tuple(max(int(i), 0) for i in np.searchsorted(starts, instants, side="right") - 1)


# -- AVI as Xvid/DivX wrote it ------------------------------------------------------------


def _bits(data: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in data)


def n_vop(vop: bytes, time_bits: int) -> bytes:
    """A not-coded P-VOP (an "N-VOP": vop_coded = 0) with the timing of the VOP in ``vop``.

    ``time_bits`` is the width of vop_time_increment, from the VOL's time resolution.
    """
    start = vop.find(VOP_START)
    bits = _bits(vop[start + 4 : start + 12])
    pos = 2  # after vop_coding_type
    while bits[pos] == "1":  # modulo_time_base: ones, then a zero
        pos += 1
    header = "01" + bits[2 : pos + 1] + bits[pos + 1 : pos + 3 + time_bits] + "0"  # coded = 0
    header += "0" + "1" * ((8 - (len(header) + 1) % 8) % 8)  # next_start_code() stuffing
    return VOP_START + int(header, 2).to_bytes(len(header) // 8, "big")


def _write_avi(path: Path, chunks: list[tuple[bytes, bool]], fps: int) -> None:
    """Mux raw MPEG-4 chunks into AVI, chunk k in time slot k."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.codec_tag = "XVID"
        for k, (data, key) in enumerate(chunks):
            packet = av.Packet(data)
            packet.pts = packet.dts = k
            packet.time_base, packet.stream = Fraction(1, fps), stream
            packet.is_keyframe = key
            container.mux(packet)


def packed_avi(path: Path, nframes: int = 40, fps: int = 10, gop: int = 12) -> Clip:
    """MPEG-4 Part 2 with one B-frame per P, packed DivX style: chunks I0, P2+B1, N, P4+B3, N..."""
    packets = encode_packets("mpeg4", list(range(nframes)), fps, {"bf": "1", "g": str(gop)})
    time_bits = max(fps - 1, 1).bit_length()
    chunks: list[tuple[bytes, bool]] = []
    k = 0
    while k < len(packets):
        data, pts, _, key = packets[k]
        if k + 1 < len(packets) and packets[k + 1][1] < pts:  # a B-frame shown before this P
            chunks += [(data + packets[k + 1][0], key), (n_vop(packets[k + 1][0], time_bits), False)]
            k += 2
        else:
            chunks.append((data, key))
            k += 1
    first, key = chunks[0]
    at = first.find(VOP_START)  # DivX's user data, which tells the decoder the stream is packed
    chunks[0] = (first[:at] + b"\x00\x00\x01\xb2DivX503b1393p" + first[at:], key)
    _write_avi(path, chunks, fps)
    return Clip(path, float(fps), tuple(range(nframes)))


def avi_with_empty_slots(path: Path, codec: str, slots: list[int], fps: int = 10) -> Clip:
    """AVI holding frames only in ``slots`` (the frame in slot s painted s); the rest are empty chunks.

    The container's frame count is the slot count (``slots[-1] + 1``), as in captures that
    dropped frames; the frame of the last non-empty slot stays on screen over a gap.
    """
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        if codec == "mpeg4":
            stream.options = {"bf": "0"}
        for slot in slots:
            frame = _picture(slot, pix_fmt)
            frame.pts, frame.time_base = slot, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    shown = shown_in_slots([s / fps for s in slots], fps, slots[-1] + 1)
    return Clip(path, float(fps), tuple(slots[i] for i in shown))


def avi_with_n_vops(path: Path, nframes: int, dropped: list[int], fps: int = 10) -> Clip:
    """P-only MPEG-4 in AVI where each chunk position in ``dropped`` is an N-VOP (Xvid's dropped frame).

    The encoder's frame k is painted k; an N-VOP shows the frame before it again.
    """
    packets = encode_packets("mpeg4", list(range(nframes)), fps, {"bf": "0"})
    time_bits = max(fps - 1, 1).bit_length()
    chunks: list[tuple[bytes, bool]] = []
    shown: list[int] = []
    for k, (data, _, _, key) in enumerate(packets):
        while len(chunks) in dropped:
            chunks.append((n_vop(data, time_bits), False))
            shown.append(shown[-1])
        chunks.append((data, key))
        shown.append(k)
    _write_avi(path, chunks, fps)
    return Clip(path, float(fps), tuple(shown))
