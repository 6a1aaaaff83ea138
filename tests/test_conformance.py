"""Conformance corpus (FFmpeg FATE style): vidcap returns exactly the frames its plan names.

Every clip is made here by FFmpeg's encoders and muxers (through PyAV) with each frame's
index painted into it; ``Clip.shown[slot]`` says which painted frame is on screen in each
time slot of 1/fps. For every codec/container class and two plans (dense: nearly every
frame; sparse: a few frames far apart, which makes the decoder seek), two checks:

* identity: the painted index of each returned frame is ``shown[planned slot]``;
* pixels: each returned frame equals, within ``PIXEL_TOLERANCE`` (mean absolute difference,
  of 255), that frame taken from a plain in-order decode of the whole file (no seeking, no
  skipping), converted to RGB and scaled the way vidcap's reference resize does.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from tests.corpus import (
    Clip,
    avi_with_empty_slots,
    avi_with_n_vops,
    encode_clip,
    has_encoder,
    packed_avi,
)
from vidcap.video.decode import DecodeReport, decode_frames
from vidcap.video.load import load_video
from vidcap.video.metadata import probe_video, probe_with_index
from vidcap.video.synthetic import frame_index_of, synthetic_frame
from vidcap.video.types import SamplingOptions

# The same decoder and the same conversion give the same pixels: any real difference (a
# neighbouring frame, a frame decoded from missing references) is far above this.
PIXEL_TOLERANCE = 0.5
FPS = 10
N = 60  # frames per clip: 6 s at 10 fps, several GOPs of 12


def _cfr(
    encoder: str, ext: str, options: dict[str, str] | None = None, pix_fmt: str = "yuv420p", fps: int = FPS
):
    def build(folder: Path) -> Clip:
        path = folder / f"{encoder}_{pix_fmt}.{ext}"
        return encode_clip(path, encoder, N, fps, options=options, pix_fmt=pix_fmt)

    build.encoder = encoder  # type: ignore[attr-defined]
    return build


def _vfr(folder: Path) -> Clip:
    gaps = [2, 2, 6, 2, 4, 1, 1, 10, 2, 3] * 6  # in 1/50 s: 20-200 ms per frame
    pts = np.cumsum([0, *gaps[:-1]]).tolist()
    path, rate = folder / "vfr.mp4", Fraction(1, 50)
    return encode_clip(path, "libx264", len(pts), 25, options={"bf": "2"}, pts_of=pts, time_base=rate)


def _mov_edit_list(folder: Path) -> Clip:
    """h264 with B-frames in mov, its first frame presented 3 frames late: an edit list maps it to 0."""
    pts = [n + 3 for n in range(N)]
    clip = encode_clip(folder / "edit.mov", "libx264", N, FPS, options={"bf": "3", "g": "12"}, pts_of=pts)
    return Clip(clip.path, clip.fps, tuple(range(N)))


def _empty_slots(codec: str):
    def build(folder: Path) -> Clip:
        slots = [0, 1, 2, 3, 8, 9, 10, 20, 21, 22, 23, 24, 30, 31, 44, 45, 46, 59]
        return avi_with_empty_slots(folder / f"empty_{codec}.avi", codec, slots, FPS)

    build.encoder = codec  # type: ignore[attr-defined]
    return build


CLASSES = {
    # MPEG-4 Part 2 (Xvid/DivX's codec) in AVI: B-frames as FFmpeg writes them, then packed.
    "mpeg4-avi-bframes": _cfr("mpeg4", "avi", {"bf": "2", "g": "12"}),
    "mpeg4-avi-packed-bframes": lambda folder: packed_avi(folder / "packed.avi", N, FPS, gop=12),
    "mpeg4-avi-n-vops": lambda folder: avi_with_n_vops(folder / "nvop.avi", N - 5, [4, 5, 17, 30, 31], FPS),
    "mjpeg-avi-empty-slots": _empty_slots("mjpeg"),
    "mpeg4-avi-empty-slots": _empty_slots("mpeg4"),
    "mpeg4-mp4-bframes": _cfr("mpeg4", "mp4", {"bf": "2", "g": "12"}),
    "h264-vfr-mp4": _vfr,
    "h264-mov-edit-list": _mov_edit_list,
    "h264-mkv-open-gop": _cfr("libx264", "mkv", {"x264-params": "open-gop=1:keyint=12:bframes=3"}),
    "h264-mp4-b-pyramid": _cfr("libx264", "mp4", {"bf": "3", "b-pyramid": "normal", "g": "12"}),
    "hevc-mp4": _cfr("libx265", "mp4", {"x265-params": "keyint=12:bframes=3:log-level=error"}),
    "hevc-mkv-open-gop": _cfr(
        "libx265", "mkv", {"x265-params": "keyint=12:open-gop=1:bframes=3:log-level=error"}
    ),
    "vp8-webm": _cfr("libvpx", "webm", {"g": "12"}),
    "vp9-webm-altref": _cfr("libvpx-vp9", "webm", {"g": "12", "auto-alt-ref": "1", "lag-in-frames": "8"}),
    "av1-mkv": _cfr("libsvtav1", "mkv", {"g": "12", "preset": "12"}),
    "av1-mp4": _cfr("libsvtav1", "mp4", {"g": "12", "preset": "12"}),
    # MPEG-1/2 take only the standard frame rates.
    "mpeg2-ts": _cfr("mpeg2video", "ts", {"bf": "2", "g": "12"}, fps=25),
    "mpeg1-mpg": _cfr("mpeg1video", "mpg", {"bf": "2", "g": "12"}, fps=25),
    # Raw elementary streams: no container timestamps, only libavformat's guesses.
    "mpeg2-raw-es": _cfr("mpeg2video", "m2v", {"bf": "2", "g": "12"}, fps=25),
    "h264-raw-es": _cfr("libx264", "h264", {"bf": "3", "g": "12"}),
    "h264-10bit-mp4": _cfr("libx264", "mp4", {"g": "12"}, pix_fmt="yuv420p10le"),
    "hevc-10bit-mkv": _cfr("libx265", "mkv", {"x265-params": "keyint=12:log-level=error"}, "yuv420p10le"),
    "av1-10bit-mkv": _cfr("libsvtav1", "mkv", {"g": "12", "preset": "12"}, pix_fmt="yuv420p10le"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("conformance")
    made: dict[str, Clip] = {}

    def get(name: str) -> Clip:
        if name not in made:
            build = CLASSES[name]
            encoder = getattr(build, "encoder", None)
            if encoder is not None and not has_encoder(encoder):
                pytest.skip(f"this PyAV build has no {encoder} encoder")
            made[name] = build(folder)
        return made[name]

    return get


def _in_order(path: Path) -> dict[int, av.VideoFrame]:
    """Every frame of a plain front-to-back decode, by painted index."""
    with av.open(str(path)) as container:
        return {frame_index_of(f.to_ndarray(format="rgb24")): f for f in container.decode(video=0)}


def _reference_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    full = VideoReformatter().reformat(frame, format="rgb24", interpolation="BICUBIC")
    return VideoReformatter().reformat(full, width=width, height=height, interpolation="BICUBIC").to_ndarray()


def _average_rate(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.streams.video[0].average_rate)


def _half_tick(path: Path) -> float:
    """Half a tick of the stream's time base: how late a frame may be stamped and still be on time."""
    with av.open(str(path)) as container:
        return float(container.streams.video[0].time_base) / 2


def _check(clip: Clip, options: SamplingOptions) -> None:
    loaded = load_video(str(clip.path), options)
    plan = loaded.plan
    shown = clip.shown_at(_average_rate(clip.path), loaded.info.total_frames, _half_tick(clip.path))
    assert max(plan.frame_indices) < len(shown), "the plan names a slot past the video's end"
    expected = [shown[slot] for slot in plan.frame_indices]
    got = [frame_index_of(frame) for frame in loaded.frames]
    assert got == expected, (plan.frame_indices, loaded.info.notes, loaded.notes)
    reference = _in_order(clip.path)
    for frame, painted in zip(loaded.frames, got, strict=True):
        truth = _reference_rgb(reference[painted], plan.resized_width, plan.resized_height)
        diff = np.abs(frame.astype(np.int16) - truth.astype(np.int16)).mean()
        assert diff <= PIXEL_TOLERANCE, f"frame {painted}: mean abs diff {diff:.2f} from the in-order decode"


@pytest.mark.parametrize("name", list(CLASSES))
def test_frames_are_the_planned_ones(corpus, name: str) -> None:
    clip = corpus(name)
    total = probe_video(str(clip.path)).total_frames
    assert total == len(clip.shown_at(_average_rate(clip.path), total))  # exactly the slots shown
    _check(clip, SamplingOptions(nframes=(total // 2) * 2))  # dense: nearly every frame
    _check(clip, SamplingOptions(nframes=4))  # sparse: gaps over keyframes, so seeks
    _check(clip, SamplingOptions(fps=2.0))  # the default sampling


def test_avi_with_bframes_is_not_seeked(corpus) -> None:
    # AVI keeps decode order only: pts are guesses there. Packed B-frames: decoded through and
    # counted; B-frames as FFmpeg writes them: named by pts, but read from the start.
    info, index = probe_with_index(str(corpus("mpeg4-avi-packed-bframes").path))
    assert index.decode_through and any("without seeking" in note for note in info.notes)
    path = str(corpus("mpeg4-avi-bframes").path)
    info, index = probe_with_index(path)
    assert index.no_seek and not index.decode_through
    report = DecodeReport()
    plan = load_video(path, SamplingOptions(nframes=4)).plan
    frames = decode_frames(path, plan, index=index, report=report)
    assert report.mode == "indexed" and report.seeks == 0
    assert report.frames_decoded < N  # unwanted non-reference frames still skipped
    assert [frame_index_of(f) for f in frames] == list(plan.frame_indices)


def test_timing_notes(corpus) -> None:
    clip = corpus("mjpeg-avi-empty-slots")
    info = probe_video(str(clip.path))
    assert any("constant rate" in note for note in info.notes)
    loaded = load_video(str(clip.path), SamplingOptions(nframes=12))
    assert any("presentation time" in note for note in loaded.notes)
    assert any("constant rate" in note for note in loaded.all_notes)  # the probe's note, carried along
    # The metadata sent with the frames is the plan's: slots at 1/fps, as decoded.
    meta = loaded.plan.processor_metadata()
    assert meta["frames_indices"] == list(loaded.plan.frame_indices)
    assert meta["fps"] == pytest.approx(FPS)
    cfr = corpus("h264-mp4-b-pyramid")
    assert not any("presentation time" in note for note in load_video(str(cfr.path), SamplingOptions()).notes)


def test_container_count_past_the_end_is_capped(tmp_path: Path) -> None:
    """An AVI whose trailing chunks are empty claims more frames than it shows."""
    clip = avi_with_empty_slots(tmp_path / "tail.avi", "mjpeg", list(range(20)), FPS)
    with av.open(str(clip.path)) as source, av.open(str(tmp_path / "long.avi"), "w") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.size:
                packet.stream = stream
                out.mux(packet)
        empty = av.Packet(b"")
        empty.pts = empty.dts = 24
        empty.time_base, empty.stream = Fraction(1, FPS), stream
        out.mux(empty)
    long = tmp_path / "long.avi"
    with av.open(str(long)) as container:
        claimed = container.streams.video[0].frames
    assert claimed == 25  # the muxer filled slots 20-24 with empty chunks
    info = probe_video(str(long))
    assert info.total_frames == 20 and any("planned over 20" in note for note in info.notes)
    loaded = load_video(str(long), SamplingOptions(nframes=20))
    assert [frame_index_of(f) for f in loaded.frames] == list(range(20))


def test_a_held_first_frame_is_the_one_on_screen_at_each_instant(tmp_path: Path) -> None:
    """A phone clip (mp4 timescale 600) whose first frame is held 0.18 s, then 30 fps: each
    planned frame is the one on screen at the instant the model is told (``plan.timestamps``),
    not the one on screen half a slot later (up to 18 ms late at this rate), as vidcap showed."""
    pts = [0, *(108 + 20 * n for n in range(59))]  # 0.18 s, then 1/30 s per frame
    clip = encode_clip(tmp_path / "held.mp4", "libx264", len(pts), 30, pts_of=pts, time_base=Fraction(1, 600))
    starts = [p / 600 for p in pts]
    total = probe_video(str(clip.path)).total_frames
    loaded = load_video(str(clip.path), SamplingOptions(nframes=(total // 2) * 2))
    expected = [max(i for i, start in enumerate(starts) if start <= t + 1e-9) for t in loaded.plan.timestamps]
    assert [frame_index_of(frame) for frame in loaded.frames] == expected
    # The clip tells the rules apart: the frame on screen half a slot later is often the next one.
    half = 0.5 / loaded.plan.video_fps
    later = [max(i for i, start in enumerate(starts) if start <= t + half) for t in loaded.plan.timestamps]
    assert later != expected and expected[:5] == [0] * 5


def test_rotation(corpus, tmp_path: Path) -> None:
    clip = corpus("h264-mp4-b-pyramid")
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(clip.path)) as src, av.open(str(rotated), "w") as out:
        copy = out.add_stream_from_template(src.streams.video[0])
        copy.set_display_rotation(90)  # counter-clockwise: shown turned 270 degrees clockwise
        for packet in src.demux(video=0):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    loaded = load_video(str(rotated), SamplingOptions(nframes=8))
    assert loaded.info.rotation == 270
    height, width = loaded.frames.shape[1:3]
    assert height > width
    got = [frame_index_of(np.rot90(frame, 3)) for frame in loaded.frames]
    assert got == [clip.shown[slot] for slot in loaded.plan.frame_indices]


def test_seeking_matches_decoding_through(corpus) -> None:
    """Where vidcap seeks, the pictures equal those of a decode without seeking."""
    for name in ("h264-mkv-open-gop", "hevc-mkv-open-gop", "vp9-webm-altref", "mpeg4-mp4-bframes"):
        clip = corpus(name)
        _, index = probe_with_index(str(clip.path))
        plan = load_video(str(clip.path), SamplingOptions(nframes=4)).plan
        seeking, through = DecodeReport(), DecodeReport()
        a = decode_frames(str(clip.path), plan, index=index, report=seeking)
        b = decode_frames(str(clip.path), plan, index=index, allow_seek=False, report=through)
        assert np.array_equal(a, b), name
        assert seeking.seeks > 0, name


CONSTANT_RATE = [
    "mpeg4-avi-bframes",
    "mpeg4-avi-packed-bframes",
    "h264-mp4-b-pyramid",
    "h264-mkv-open-gop",
    "hevc-mp4",
    "vp9-webm-altref",
    "mpeg2-ts",  # (no AV1 here: decord 0.6 cannot open AV1 streams)
]


@pytest.mark.parametrize("name", CONSTANT_RATE)
def test_constant_rate_plans_equal_the_reference(corpus, monkeypatch, name: str) -> None:
    """On constant-rate files the plan is qwen-vl-utils 0.0.14 fetch_video's (decord backend)."""
    pytest.importorskip("decord")
    ref = pytest.importorskip("qwen_vl_utils.vision_process")
    monkeypatch.setattr(ref, "get_video_reader_backend", lambda: "decord")
    clip = corpus(name)
    for options, ele in ((SamplingOptions(), {}), (SamplingOptions(fps=None, nframes=8), {"nframes": 8})):
        _, meta = ref.fetch_video({"video": str(clip.path), **ele}, return_video_metadata=True)
        plan = load_video(str(clip.path), options).plan
        assert list(plan.frame_indices) == [int(i) for i in meta["frames_indices"]]
        assert (plan.total_frames, plan.video_fps) == (meta["total_num_frames"], pytest.approx(meta["fps"]))


def test_tiny_coded_frames_are_not_taken_for_n_vops(tmp_path: Path) -> None:
    """A still picture in MPEG-4 gives P-VOPs of a few bytes: coded frames, unlike N-VOPs."""
    path = tmp_path / "still.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        still = av.VideoFrame.from_ndarray(synthetic_frame(5, 160, 120), format="rgb24")
        for _ in range(20):
            for packet in stream.encode(still):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        sizes = [p.size for p in container.demux(video=0) if p.size]
    assert min(sizes) < 64  # small enough for the probe to parse as a possible N-VOP
    info, index = probe_with_index(str(path))
    assert index.frames == info.total_frames == 20 and index.regular
    assert not any("N-VOP" in note for note in info.notes)
