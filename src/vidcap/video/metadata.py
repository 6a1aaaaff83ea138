"""Read a video's metadata with PyAV, without decoding more than its first frame.

``probe_video`` gives the :class:`VideoInfo` the frame planner needs. Its ``total_frames``
follows decord's ``len(VideoReader(path))`` on ordinary files, because the frame plan must
match qwen-vl-utils' (which counts with decord): the container's frame count where it keeps
one (mp4, mov, avi), else the number of video packets found by demuxing the whole file (mkv,
webm, mpeg-ps/ts, ogg), which is what decord itself counts.

``scan_packets`` is that demux pass, kept as a :class:`PacketIndex` (each frame's
presentation timestamp and the keyframes) so that the decoder can seek to a keyframe and
still know exactly which frame index each decoded frame is.

One frame numbering serves the plan and the decoder: frame ``i`` of a plan is the time slot
``[i / fps, (i + 1) / fps)`` from the first frame. Where the timestamps follow a constant
rate (frame ``n`` starts at ``n`` x a fixed step, within half a step) slot ``i`` is the
``i``-th frame, as decord and qwen-vl-utils number them. Where they do not (AVI with empty
or N-VOP slots, variable frame rate), slot ``i`` is the frame on screen at its instant
``i / fps``, the time the model is told: :meth:`PacketIndex.frames_at` translates.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import av.stream
import av.video.stream

from vidcap.errors import RecordError, VidcapError
from vidcap.io import object_store
from vidcap.video.types import MAX_PLAUSIBLE_FPS, VideoInfo

# Packets fed to the decoder while looking for the first frame (rotation, pixel format).
_FIRST_FRAME_PACKETS = 64
# MPEG-4 Part 2: a VOP's start code, and a size no "not coded" VOP (an N-VOP: a header
# saying "show the previous frame again") exceeds; only packets this small are parsed.
_VOP_START = b"\x00\x00\x01\xb6"
_SMALL_PACKET = 64
# Packets looked into for a packed P+B pair: packing is how the encoder was set up, so it
# shows in the first GOPs; looking at every packet of a long file would copy all of it.
_PACKED_LOOKS = 300


@dataclass(frozen=True)
class PacketIndex:
    """Where each frame of a video stream sits, from one demux pass (no decoding).

    ``pts[i]`` is the presentation timestamp (in ``time_base`` units) of frame ``i``, frames
    numbered in presentation order as decord numbers them; ``keyframes`` are the frame
    indices of keyframe packets, ascending. ``reliable`` is False when a packet had no pts
    or two shared one: the pts cannot then name frames, and the decoder counts frames.
    ``regular`` says the pts follow a constant step (frame n at n steps, within half a
    step). ``decode_through`` is why decoded frames cannot be named by their pts (nor
    seeked to), although the pts still give each frame's time; empty when they can.
    ``no_seek`` is why frames can be named by their pts only when read from the start.
    """

    time_base: Fraction
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    reliable: bool
    packets: int  # video packets demuxed: decord's frame count
    regular: bool = True
    decode_through: str = ""
    no_seek: str = ""

    def __len__(self) -> int:
        return self.packets

    @property
    def frames(self) -> int:
        """Frames the decoder will output: one per listed pts (N-VOPs excluded), else packets."""
        return len(self.pts) if self.reliable else self.packets

    def times(self) -> list[float]:
        """Each frame's start, in seconds from the first frame (presentation order)."""
        first = self.pts[0] if self.pts else 0
        return [float((pts - first) * self.time_base) for pts in self.pts]

    def slot_count(self, fps: float) -> int:
        """Slots of ``1 / fps`` from the first frame's start to the last frame's (inclusive)."""
        if not self.reliable or not self.pts:
            return self.packets
        return round(self.times()[-1] * fps) + 1

    def frames_at(self, slots: list[int] | tuple[int, ...], fps: float) -> list[int]:
        """The frame (presentation-order index) on screen at each slot's instant, ``slot / fps``.

        With regular timestamps slot ``i`` is frame ``i``. Otherwise it is the last frame that
        starts at or before the instant, the time the plan reports to the model. A frame
        stamped up to half a tick of the time base after the instant counts as starting at it:
        timestamps are rounded to the tick, so a frame meant for that instant can be stamped
        just after it. (Taking the frame on screen at the middle of the slot instead showed,
        on a phone clip whose first frame is held 0.18 s, the frame after the one on screen.)
        """
        if self.regular or not self.reliable or not self.pts or not fps > 0:
            return list(slots)
        times = self.times()
        slack = float(self.time_base) / 2
        return [max(bisect_right(times, slot / fps + slack) - 1, 0) for slot in slots]

    def keyframe_at_or_before(self, frame: int) -> int | None:
        """Index of the last keyframe at or before ``frame``, or None."""
        pos = bisect_right(self.keyframes, frame) - 1
        return self.keyframes[pos] if pos >= 0 else None


def open_container(path: str) -> av.container.InputContainer:
    """Open ``path`` for reading, turning every failure into a one-line RecordError.

    An object-store URL (``s3://``...) is read through fsspec with range reads
    (``vidcap.io.object_store.open_video``); local paths never go there."""
    if object_store.is_url(path):
        return _open_url(path)
    if not os.path.exists(path):
        raise RecordError(f"video not found: {path}")
    if os.path.isdir(path):
        raise RecordError(f"not a video file (a directory): {path}")
    try:
        return av.open(path, mode="r")
    except av.FFmpegError as exc:
        raise RecordError(f"cannot open video: {path}: {libav_message(exc)}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"cannot open video: {path}: {exc}") from None


def _open_url(url: str) -> av.container.InputContainer:
    try:
        f = object_store.open_video(url)
    except FileNotFoundError:
        raise RecordError(f"video not found: {url}") from None
    except VidcapError as exc:  # no such filesystem installed, bad options
        raise RecordError(str(exc)) from None
    except Exception as exc:  # the store's own errors (credentials, network) fail this record
        raise RecordError(f"cannot open video: {url}: {object_store.describe(exc)}") from None
    try:
        return av.open(f, mode="r")
    except av.FFmpegError as exc:
        raise RecordError(f"cannot open video: {url}: {libav_message(exc)}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"cannot open video: {url}: {object_store.describe(exc)}") from None


def video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    """The stream decord would read: libav's best video stream, cover art excluded."""
    # An attached picture (the cover of an mp3 or m4a) is a one-frame "video" stream;
    # captioning it as a video would be wrong, so such a file counts as audio only.
    candidates = [
        s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)
    ]
    if not candidates:
        raise RecordError(f"no video stream in {path} (audio only?)")
    try:
        best = container.streams.best("video")
    except av.FFmpegError:
        best = None
    return best if best in candidates else candidates[0]


def libav_message(exc: BaseException) -> str:
    """libav's own words for an error ("Invalid data found when processing input")."""
    message = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(message).split())


def scan_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[PacketIndex, av.VideoFrame | None, list[str]]:
    """Demux ``stream`` to its end, decoding only until a first frame appears.

    Returns the packet index, that first frame (None if none decoded within the first
    packets) and notes. Leaves the container at its end: reopen or seek before decoding.
    """
    notes: list[str] = []
    pts_list: list[int] = []
    keys: list[int] = []  # pts of keyframe packets
    reliable = True
    packets = 0
    reordered = False  # a packet's pts differs from its dts: the codec reorders frames
    mpeg4 = stream.codec_context.name == "mpeg4"
    packed = False  # DivX/Xvid packed B-frames: a P- and a B-VOP in one packet
    small: list[tuple[int, bytes]] = []  # (pts, data) of small MPEG-4 packets: N-VOPs?
    first: av.VideoFrame | None = None
    codec = stream.codec_context
    codec.thread_count = 1  # one frame: threads would only add start-up cost
    fed = 0
    try:
        for packet in container.demux(stream):
            if not packet.size:  # the empty packet PyAV yields at the end, for flushing
                continue
            packets += 1
            if packet.pts is None:
                reliable = False
            else:
                reordered = reordered or (packet.dts is not None and packet.dts != packet.pts)
                pts_list.append(packet.pts)
                if mpeg4 and packet.size <= _SMALL_PACKET:
                    small.append((packet.pts, bytes(packet)))
                elif mpeg4 and not packed and packets <= _PACKED_LOOKS:
                    packed = bytes(packet).count(_VOP_START) > 1
                if packet.is_keyframe:
                    keys.append(packet.pts)
            if first is None and fed < _FIRST_FRAME_PACKETS:
                fed += 1
                try:
                    frames = codec.decode(packet)
                except av.FFmpegError:
                    frames = []  # a bad first packet is the decoder's business, not the probe's
                if frames:
                    first = frames[0]
    except av.FFmpegError as exc:
        notes.append(f"demuxing stopped early: {libav_message(exc)}")
    if not reliable:
        notes.append("some packets have no timestamp; frames are numbered by decode order")
    through = ""
    if packed:
        # Each N-VOP stands for the B-frame packed into the packet before it: a picture.
        through = "packed B-frames (DivX/Xvid): packets do not name the frames they hold"
    elif small:
        # libavcodec outputs no picture for a not-coded VOP: the frame before stays on screen.
        rate = stream.codec_context.framerate  # the VOL's time resolution, once a frame decoded
        time_bits = max(int(rate.numerator) - 1, 1).bit_length() if rate else 0
        empty = {pts for pts, data in small if time_bits and _vop_coded(data, time_bits) is False}
        if empty:
            pts_list = [pts for pts in pts_list if pts not in empty]
            notes.append(f"{len(empty)} not-coded MPEG-4 frame(s) (N-VOPs): the frame before stays on screen")
    no_seek = ""
    if through:
        notes.append(f"{through}; decoded from the start, without seeking")
    elif reordered and "avi" in container.format.name.split(","):
        # AVI stores decode order only; libavformat guesses presentation times from it in one
        # pass (the same guesses as here), and a seek restarts the guess.
        no_seek = "AVI with B-frames: presentation times are guessed from decode order"
        notes.append(f"{no_seek}; decoded without seeking")
    if reliable and len(set(pts_list)) != len(pts_list):
        reliable = False
        notes.append("packet timestamps repeat; frames are numbered by decode order")
    if not reliable or not pts_list:
        return PacketIndex(stream.time_base or Fraction(1), (), (), False, packets), first, notes
    pts_sorted = sorted(pts_list)
    regular = _regular(pts_sorted)
    if not regular and container.format.flags & av.format.Flags.no_timestamps.value:
        # A raw elementary stream: libavformat invented these timestamps; order is all there is.
        regular = True
        notes.append("the format stores no timestamps (raw stream): frames are taken in order")
    position = {pts: i for i, pts in enumerate(pts_sorted)}
    keys = sorted(pts for pts in keys if pts in position)
    index = PacketIndex(
        time_base=stream.time_base or Fraction(1),
        pts=tuple(pts_sorted),
        keyframes=tuple(position[pts] for pts in keys),
        reliable=True,
        packets=packets,
        regular=regular,
        decode_through=through,
        no_seek=no_seek,
    )
    return index, first, notes


def _vop_coded(data: bytes, time_bits: int) -> bool | None:
    """The vop_coded flag of the first MPEG-4 VOP header in ``data`` (None: no VOP there).

    Header bits: vop_coding_type (2), modulo_time_base (ones, then a zero), a marker,
    vop_time_increment (``time_bits``), a marker, vop_coded.
    """
    at = data.find(_VOP_START)
    if at < 0:
        return None
    bits = "".join(f"{byte:08b}" for byte in data[at + 4 : at + 16])
    pos = 2
    while pos < len(bits) and bits[pos] == "1":
        pos += 1
    marker, pos = pos + 1, pos + 2 + time_bits
    if pos + 1 >= len(bits) or bits[marker] != "1" or bits[pos] != "1":
        return None  # not the header this reading expects (e.g. a different time width)
    return bits[pos + 1] == "1"


def _regular(pts: list[int]) -> bool:
    """Whether frame n starts at n equal steps from the first, within half a step."""
    if len(pts) < 3:
        return True
    # |(p - first) - n * span / steps| < span / steps / 2, in integers.
    first, span, steps = pts[0], pts[-1] - pts[0], len(pts) - 1
    return all(2 * abs((p - first) * steps - n * span) < span for n, p in enumerate(pts))


def _first_frame(container: av.container.InputContainer, stream: av.video.stream.VideoStream):
    """Decode just the first frame (for the display matrix and the real pixel format)."""
    codec = stream.codec_context
    codec.thread_count = 1
    try:
        for fed, packet in enumerate(container.demux(stream)):
            if fed >= _FIRST_FRAME_PACKETS:
                break
            try:
                frames = codec.decode(packet)
            except av.FFmpegError:
                continue
            if frames:
                return frames[0]
    except av.FFmpegError:
        pass
    return None


def _sane_rate(rate: Fraction | None) -> float | None:
    if rate is None or rate.denominator == 0:
        return None
    value = float(rate)
    if not math.isfinite(value) or value <= 0 or value > MAX_PLAUSIBLE_FPS:
        return None
    return value


def _rotation(stream: av.video.stream.VideoStream, frame: av.VideoFrame | None, notes: list[str]) -> int:
    """Degrees clockwise to turn frames for display, as decord reads it.

    A ``rotate`` tag (old muxers; clockwise) wins; else the display matrix, which libav
    attaches to decoded frames (``frame.rotation`` is counter-clockwise).
    """
    degrees = 0.0
    tag = stream.metadata.get("rotate")
    if tag and tag.strip() not in ("", "0"):
        try:
            degrees = float(tag)
        except ValueError:
            notes.append(f"ignored unreadable rotate tag {tag!r}")
    elif frame is not None:
        degrees = -float(frame.rotation or 0)
    rounded = round(degrees / 90.0) * 90 % 360
    off = abs((degrees - rounded + 180) % 360 - 180)  # angular distance to the multiple of 90
    if off > 0.5:
        notes.append(f"rotation {degrees:g} degrees rounded to {rounded}")
    return rounded


def _bit_depth(pix_fmt: str) -> int:
    try:
        return max(component.bits for component in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.FFmpegError):
        return 8


def probe_with_index(path: str, *, index: bool = True) -> tuple[VideoInfo, PacketIndex | None]:
    """Probe ``path``; with ``index=True`` also return its :class:`PacketIndex`.

    The index costs one demux pass (reading the file, not decoding it); without it the
    frame count is the container's, unchecked.
    """
    notes: list[str] = []
    with open_container(path) as container:
        stream = video_stream(container, path)
        codec = stream.codec_context
        known = stream.frames if stream.frames and stream.frames > 0 else None
        packet_index: PacketIndex | None = None
        if index or known is None:
            packet_index, first, scan_notes = scan_packets(container, stream)
            notes.extend(scan_notes)
            counted: int | None = len(packet_index)
        else:
            first = _first_frame(container, stream)
            counted = None

        fps = _sane_rate(stream.average_rate)
        if fps is None:
            guessed = _sane_rate(stream.guessed_rate)
            if guessed is not None:
                fps = guessed
                notes.append(f"no average frame rate; using the guessed rate {guessed:g}")
            else:
                notes.append("no usable frame rate")

        if known is not None:
            total_frames: int | None = known
            if packet_index is not None and packet_index.reliable:
                total_frames = _frames_to_plan(known, packet_index, fps, notes)
            elif counted is not None and counted != known:
                notes.append(f"container says {known} frames, demuxing found {counted}; using {known}")
        elif counted:
            total_frames = counted
            notes.append("frame count from demuxing (the container does not store one)")
            if packet_index is not None and packet_index.reliable and not packet_index.regular and fps:
                notes.append(_by_time_note(packet_index, fps))
        else:
            total_frames = None
            notes.append("no frame count: the stream has no packets")

        if stream.duration and stream.time_base:
            duration: float | None = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None

        pix_fmt = first.format.name if first is not None else (codec.pix_fmt or "")
        if first is None:
            notes.append("no frame decoded while probing; rotation assumed from tags only")
        info = VideoInfo(
            path=path,
            container=container.format.name,
            codec=codec.codec.canonical_name,  # "av1", not the decoder's name "libdav1d"
            width=int(codec.width or (first.width if first is not None else 0)),
            height=int(codec.height or (first.height if first is not None else 0)),
            rotation=_rotation(stream, first, notes),
            fps=fps,
            duration=duration,
            total_frames=total_frames,
            pix_fmt=pix_fmt,
            bit_depth=_bit_depth(pix_fmt) if pix_fmt else 8,
            notes=tuple(notes),
        )
    return info, packet_index


def _by_time_note(index: PacketIndex, fps: float) -> str:
    return (
        f"timestamps do not follow a constant rate ({index.frames} frames over "
        f"{index.slot_count(fps)} slots of 1/{fps:g} s): each planned frame is the one on screen "
        "at its instant"
    )


def _frames_to_plan(known: int, index: PacketIndex, fps: float | None, notes: list[str]) -> int:
    """The frame count to plan with when the container stores ``known`` and the index is good.

    ``known`` (decord's count) unless the stream holds fewer frames than the container says:
    then the count the timestamps span, so that no planned frame lies past the video's end.
    """
    frames = index.frames
    if index.regular:
        if known > frames:
            notes.append(f"container says {known} frames, the stream holds {frames}; planned over {frames}")
            return frames
        if known < frames:
            notes.append(f"container says {known} frames, demuxing found {frames}; using {known}")
        return known
    if not fps:
        return known
    notes.append(_by_time_note(index, fps))
    span = index.slot_count(fps)
    if known > span:
        notes.append(
            f"container says {known} frames, the timestamps end at slot {span - 1}; planned over {span}"
        )
        return span
    return known


def probe_video(path: str) -> VideoInfo:
    """Describe the first (best) video stream of ``path``.

    Raises RecordError, with one line naming the path, for a missing file, a directory, a
    file libav cannot open, or one without a video stream. Decodes at most the first frame,
    and demuxes the whole stream (reading, not decoding), so that the frame count and notes
    are the ones a run plans with.
    """
    info, _ = probe_with_index(path, index=True)
    return info
