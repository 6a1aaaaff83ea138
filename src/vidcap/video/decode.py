"""Decode exactly the planned frames of a video, as RGB at the planned size.

A plan names time slots (slot ``i`` is ``[i / fps, (i + 1) / fps)`` from the first frame);
:meth:`~vidcap.video.metadata.PacketIndex.frames_at` turns them into frames in presentation
order. For a constant-rate file slot ``i`` is the ``i``-th frame, as decord numbers frames
(so a plan made like qwen-vl-utils' picks the same pictures); where timestamps and frame
count disagree it is the frame on screen at the slot's instant, i / fps. Only planned frames are
converted to RGB; the others are decoded because later frames depend on them, except that
non-reference frames nobody asked for are not even decoded (``skip_frame``), and a gap that
spans a keyframe is crossed by seeking to the keyframe before the next planned frame.

Two ways of numbering frames, in order of preference:

* *indexed*: a :class:`~vidcap.video.metadata.PacketIndex` (every packet's pts, sorted) names
  each decoded frame by its pts. This is what allows seeking and skipping. It is checked as
  it goes (pts known, increasing, the keyframe seeked to shows up) and abandoned for the
  next mode at the first inconsistency.
* *sequential*: decode from the start and count output frames, as decord does when it
  reads forward. Never skips anything. Used from the start where the index says packets do
  not name the frames they hold (``decode_through``): DivX/Xvid packed B-frames.

AVI with B-frames is read *indexed* but never seeked (``no_seek``): libavformat guesses its
pts from decode order, the same guesses in every front-to-back pass, but a seek restarts
the guess (seeking there once returned neighbouring and stale frames).

Resizing: libswscale converts a frame to RGB at its own size, then scales it with bicubic
to the planned size. That matches the reference (decord RGB + torchvision bicubic with
antialias) to a mean abs diff of ~0.1/255 on textured content, where a one-step
scale-and-convert differs by ~2.4-4/255 (p99 9-20) because it filters the subsampled
chroma differently; it costs ~5 ms more per planned 1080p frame. ``resize="fast"`` picks
the one-step path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import av
import av.container
import av.video.stream
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from vidcap.errors import RecordError
from vidcap.video.metadata import PacketIndex, libav_message, open_container, scan_packets, video_stream
from vidcap.video.types import FramePlan

Resize = Literal["reference", "fast"]

# One-step path: AREA with full chroma interpolation was the closest of libswscale's
# one-step filters to the reference (BICUBIC alone: 1.7x the error on textured content).
_FAST_FLAGS = Interpolation.AREA | Interpolation.FULL_CHR_H_INT
_SEEKABLE = frozenset({"mov", "mp4", "matroska", "webm", "avi"})
# Decoders that read skip_frame for each frame. Others (libdav1d) read it once, when the
# codec opens: toggling it there would drop every non-reference frame, wanted or not.
_SKIP_NONREF = frozenset({"h264", "hevc", "vp8", "vp9", "mpeg4", "mpeg1video", "mpeg2video"})


@dataclass
class DecodeReport:
    """What a decode did; pass one to ``decode_frames`` to get it filled in."""

    mode: str = ""  # "indexed" or "sequential"
    seeks: int = 0
    frames_decoded: int = 0  # frames the decoder output (skipped non-reference frames excluded)
    frames_converted: int = 0  # distinct frames converted to RGB
    notes: list[str] = field(default_factory=list)


class _FallbackError(Exception):
    """The packet index does not describe the decoder's output: count frames instead."""


class _SeekError(Exception):
    """Seeking did not land where the index said: decode through instead."""


class _Pass:
    """One attempt at decoding the plan; state that a retry starts afresh."""

    def __init__(
        self,
        path: str,
        wanted: dict[int, list[int]],
        out: np.ndarray,
        rotation: int,
        threads: int,
        resize: Resize,
        report: DecodeReport,
    ) -> None:
        self.path = path
        self.wanted = wanted  # frame index -> positions in the output
        self.needed = sorted(wanted)
        self.out = out
        self.turns = (-rotation // 90) % 4  # np.rot90 turns counter-clockwise
        # Scale to the pre-rotation size: the plan's size is the display size.
        height, width = out.shape[1:3]
        self.size = (height, width) if self.turns % 2 else (width, height)
        self.threads = threads
        self.resize = resize
        self.report = report
        self.filled: set[int] = set()
        self.last: tuple[int, av.VideoFrame] | None = None  # the latest decoded frame
        self.errors = 0
        self.first_error = ""
        self._to_rgb = VideoReformatter()
        self._scale = VideoReformatter()

    # -- plumbing -----------------------------------------------------------------------

    def open(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        container = open_container(self.path)
        stream = video_stream(container, self.path)
        codec = stream.codec_context
        codec.thread_type = "AUTO"
        codec.thread_count = self.threads
        return container, stream

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = libav_message(exc)

    def frames(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        before_send: Callable[[av.Packet], None] | None = None,
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames from the current position to the end, riding over bad packets."""
        codec = stream.codec_context
        demux = container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.FFmpegError as exc:  # damaged container: drain what the decoder holds
                self.error(exc)
                packet = None
            if before_send is not None and packet is not None:
                before_send(packet)
            try:
                decoded = codec.decode(packet)
            except av.FFmpegError as exc:
                self.error(exc)
                continue
            for frame in decoded:
                self.report.frames_decoded += 1
                yield frame
            if packet is None:
                return

    def rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """``frame`` as RGB at the planned size, turned for display."""
        width, height = self.size
        if self.resize == "fast":
            rgb = self._scale.reformat(
                frame, width=width, height=height, format="rgb24", interpolation=_FAST_FLAGS, threads=1
            )
        else:
            full = self._to_rgb.reformat(frame, format="rgb24", interpolation="BICUBIC", threads=1)
            rgb = self._scale.reformat(full, width=width, height=height, interpolation="BICUBIC", threads=1)
        array = rgb.to_ndarray()
        if self.turns:
            array = np.rot90(array, self.turns)
        return array

    def convert(self, frame: av.VideoFrame, index: int) -> None:
        """Convert ``frame`` into every output slot that wants frame ``index``."""
        array = self.rgb(frame)
        for slot in self.wanted[index]:
            self.out[slot] = array
        self.filled.add(index)
        self.report.frames_converted += 1

    def take(self, frame: av.VideoFrame, index: int) -> None:
        self.last = (index, frame)
        if index in self.wanted and index not in self.filled:
            self.convert(frame, index)

    # -- the two modes ------------------------------------------------------------------

    def sequential(self) -> None:
        """Decode from the start, numbering frames by output order."""
        self.report.mode = "sequential"
        container, stream = self.open()
        with container:
            final = self.needed[-1]
            for count, frame in enumerate(self.frames(container, stream)):
                self.take(frame, count)
                if count >= final:
                    break

    def indexed(self, index: PacketIndex, allow_seek: bool) -> None:
        """Name frames by pts; seek over keyframes and skip unneeded non-reference frames."""
        self.report.mode = "indexed"
        frame_of = {pts: i for i, pts in enumerate(index.pts)}
        container, stream = self.open()
        # Seek only where the demuxer seeks by an index of keyframes (mp4/mov, mkv/webm, avi).
        # MPEG-PS/TS and Ogg seek by bisecting timestamps, which can land past the target.
        allow_seek = allow_seek and any(name in _SEEKABLE for name in container.format.name.split(","))
        codec = stream.codec_context
        skipping = ["DEFAULT"]

        def skip_unwanted(packet: av.Packet) -> None:
            # A non-reference frame no one asked for changes no other frame: don't decode it.
            frame = frame_of.get(packet.pts)  # type: ignore[arg-type]
            mode = "NONREF" if frame is not None and frame not in self.wanted else "DEFAULT"
            if mode != skipping[0]:
                codec.skip_frame = mode
                skipping[0] = mode

        before_send = skip_unwanted if codec.codec.name in _SKIP_NONREF else None

        with container:
            frames = None
            last = -1  # index of the latest frame output since the last seek
            awaiting_key: int | None = None  # the keyframe a seek must produce first
            for target in self.needed:
                if target in self.filled:
                    continue
                if last >= target:  # passed over (a damaged frame): nothing to do but fill later
                    continue
                key = index.keyframe_at_or_before(target)
                # Seek when a keyframe lies between the next frame out and the target: decoding
                # from that keyframe gives the same pictures as decoding through the gap.
                if frames is None or (allow_seek and key is not None and key > last + 1):
                    if allow_seek and key is not None and key > 0:
                        try:
                            # By pts: what mov and matroska index by (mov's index holds dts
                            # shifted by the first pts; seeking to the dts lands a GOP early).
                            container.seek(index.pts[key], stream=stream, backward=True)
                        except av.FFmpegError as exc:
                            raise _SeekError(f"seek failed: {libav_message(exc)}") from None
                        codec.flush_buffers()
                        self.report.seeks += 1
                        awaiting_key, last = key, -1
                    frames = self.frames(container, stream, before_send)
                for frame in frames:
                    number = frame_of.get(frame.pts) if frame.pts is not None else None
                    if number is None:
                        raise _FallbackError("a decoded frame has a timestamp the demuxer did not list")
                    if number <= last:
                        raise _FallbackError("decoded frames' timestamps are out of order")
                    last = number
                    if awaiting_key is not None:
                        if number < awaiting_key:
                            continue  # leading pictures of an open GOP, possibly broken
                        if number != awaiting_key:
                            raise _SeekError(f"seek to frame {awaiting_key} landed at frame {number}")
                        awaiting_key = None
                    self.take(frame, number)
                    if number >= target:
                        break
                else:  # end of stream
                    if awaiting_key is not None:
                        raise _SeekError(f"seek to frame {awaiting_key} found no frames")
                    return


def decode_frames(
    path: str,
    plan: FramePlan,
    *,
    rotation: int = 0,
    threads: int = 2,
    index: PacketIndex | None = None,
    allow_seek: bool = True,
    resize: Resize = "reference",
    report: DecodeReport | None = None,
) -> np.ndarray:
    """Return the frames at ``plan.frame_indices`` as uint8 RGB ``(n, height, width, 3)``.

    The indices are time slots of ``1 / plan.video_fps`` (the frame indices of a
    constant-rate file); ``index`` says which frame is on screen in each.

    ``height``/``width`` are ``plan.resized_height``/``resized_width`` (display orientation);
    frames are turned ``rotation`` degrees clockwise after scaling. Indices may repeat.
    ``threads`` caps the decoder's threads (libswscale runs single-threaded). ``index``
    (from ``probe_with_index``) saves a demux pass; without one it is built here.
    ``allow_seek=False`` decodes through every gap (for checking the seek path).

    Honest limits: a planned frame the stream does not deliver (the container over-reported
    its frame count, the file is truncated, or a packet is damaged) is filled with the
    nearest decoded frame before it (else after it), the stream's last frame for frames
    past the end, and a note says so in ``report.notes``; the caller decides whether that
    matters. Raises RecordError when no planned frame can be decoded at all
    ("no decodable frames in <path>", or "corrupt video <path>: <libav message>" when the
    decoder reported errors and fewer than half the planned frames decoded).
    """
    report = report if report is not None else DecodeReport()
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90, got {rotation}")
    if any(frame < 0 for frame in plan.frame_indices):
        raise ValueError(f"negative frame index {min(plan.frame_indices)} in plan")
    out = np.empty((len(plan.frame_indices), plan.resized_height, plan.resized_width, 3), np.uint8)
    if not plan.frame_indices:
        return out

    if index is None:
        with open_container(path) as container:
            index, _, scan_notes = scan_packets(container, video_stream(container, path))
        report.notes.extend(scan_notes)
    # The plan names time slots; the decoder numbers frames in presentation order.
    frames = index.frames_at(plan.frame_indices, plan.video_fps)
    wanted: dict[int, list[int]] = {}
    for slot, frame in enumerate(frames):
        wanted.setdefault(frame, []).append(slot)
    if frames != list(plan.frame_indices):
        held = sum(1 for a, b in pairwise(frames) if a == b)
        note = "frames chosen by presentation time (timestamps do not follow the frame count)"
        if held:
            note += f"; {held} sampled instant(s) show the frame still on screen from the one before"
        report.notes.append(note)
    if index.reliable and index.frames and max(wanted) >= index.frames:
        # Frames past the end do not exist: ask for the real last frame instead, so the
        # decoder does not skip it and clamping has it converted.
        last = index.frames - 1
        beyond = sorted(f for f in wanted if f > last)
        for frame in beyond:
            wanted.setdefault(last, []).extend(wanted.pop(frame))
        report.notes.append(
            f"plan asks for frames up to {beyond[-1]} but the stream has {index.frames}; "
            f"{len(beyond)} planned frame(s) repeat the last frame ({last})"
        )

    def attempt() -> _Pass:
        return _Pass(path, wanted, out, rotation % 360, threads, resize, report)

    decoder = attempt()
    if index.reliable and not index.decode_through:
        try:
            try:
                decoder.indexed(index, allow_seek and not index.no_seek)
            except _SeekError as exc:
                report.notes.append(f"{exc}; decoded without seeking")
                decoder = attempt()
                decoder.indexed(index, allow_seek=False)
        except _FallbackError as exc:
            report.notes.append(f"{exc}; frames numbered by decode order instead")
            decoder = attempt()
            decoder.sequential()
    else:
        decoder.sequential()
    _fill_missing(decoder, path, report)
    return out


def _fill_missing(decoder: _Pass, path: str, report: DecodeReport) -> None:
    """Give every planned frame the stream did not deliver its nearest decoded neighbour."""
    missing = [frame for frame in decoder.needed if frame not in decoder.filled]
    real = sorted(decoder.filled)  # planned frames decoded for real
    if missing and (not real or (decoder.errors and 2 * len(real) < len(decoder.needed))):
        if decoder.errors:
            raise RecordError(f"corrupt video {path}: {decoder.first_error}")
        if decoder.last is None:
            raise RecordError(f"no decodable frames in {path}")
    if missing and decoder.last is not None and missing[-1] > decoder.last[0]:
        # The stream ended early: its last frame stands in for every planned frame after it.
        last_index, last_frame = decoder.last
        past = [frame for frame in missing if frame > last_index]
        array = decoder.rgb(last_frame)
        for frame in past:
            for slot in decoder.wanted[frame]:
                decoder.out[slot] = array
        report.notes.append(
            f"stream ended after frame {last_index}: {len(past)} planned frame(s) "
            f"(first {past[0]}) repeat its last frame"
        )
        missing = [frame for frame in missing if frame <= last_index]
    if missing and real:
        for frame in missing:
            pos = bisect_left(real, frame)
            source = real[pos - 1] if pos else real[0]
            for slot in decoder.wanted[frame]:
                decoder.out[slot] = decoder.out[decoder.wanted[source][0]]
        report.notes.append(
            f"{len(missing)} planned frame(s) could not be decoded (first {missing[0]}); "
            "filled with the nearest decoded frame before (or after) it"
        )
    elif missing and decoder.last is not None:
        array = decoder.rgb(decoder.last[1])
        for frame in missing:
            for slot in decoder.wanted[frame]:
                decoder.out[slot] = array
        report.notes.append(f"no planned frame decoded; all repeat frame {decoder.last[0]}")
    if decoder.errors:
        report.notes.append(f"{decoder.errors} decode error(s), first: {decoder.first_error}")
