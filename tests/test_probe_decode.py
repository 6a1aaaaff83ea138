"""probe_video, decode_frames, load_video and ``vidcap probe`` on tiny generated clips.

Exactness is checked with ``frame_index_of``: every synthetic frame carries its index, so a
decoded (even resized) frame says which frame it is. decord is the reference for frame
counts and orientation, since the frame plan must match qwen-vl-utils' (decord backend).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.corpus import has_encoder
from vidcap.errors import RecordError
from vidcap.video.decode import DecodeReport, decode_frames
from vidcap.video.load import load_video
from vidcap.video.metadata import PacketIndex, probe_video, probe_with_index
from vidcap.video.synthetic import frame_index_of, make_clip, synthetic_frame
from vidcap.video.types import FramePlan, SamplingOptions

W, H = 160, 120


def _plan(indices: tuple[int, ...], width: int = 112, height: int = 84) -> FramePlan:
    """A hand-made plan: any indices (repeats allowed), any output size."""
    return FramePlan(
        nframes=len(indices),
        frame_indices=indices,
        timestamps=tuple(i / 10 for i in indices),
        resized_width=width,
        resized_height=height,
        video_fps=10.0,
        total_frames=max(indices) + 1,
        sample_fps=1.0,
        video_tokens=0,
    )


def _indices(frames: np.ndarray, turns: int = 0) -> list[int]:
    """Read back each frame's index; ``turns`` undoes a display rotation (np.rot90 turns)."""
    return [frame_index_of(np.rot90(frame, turns)) for frame in frames]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory):
    """``clips(name, **make_clip_kwargs)``: a clip made once per module."""
    folder = tmp_path_factory.mktemp("probe_decode")
    made: dict[str, Path] = {}

    def get(name: str, **kwargs) -> Path:
        if name not in made:
            made[name] = make_clip(folder / name, **kwargs)
        return made[name]

    get.folder = folder  # type: ignore[attr-defined]
    return get


# -- probing ------------------------------------------------------------------------------


def test_probe_fields(clips) -> None:
    info = probe_video(str(clips("a.mp4", seconds=2.0, fps=10)))
    assert "mp4" in info.container
    assert (info.codec, info.width, info.height, info.rotation) == ("h264", W, H, 0)
    assert info.fps == 10.0
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.total_frames == 20
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p", 8)


@pytest.mark.parametrize(
    ("name", "codec", "fps"),
    [
        ("c.mp4", "libx264", 10),
        ("c.mov", "libx264", 10),
        ("c.mkv", "libx264", 10),
        ("c.webm", "libvpx-vp9", 10),
        ("c.avi", "mpeg4", 10),
        ("c.mpg", "mpeg2video", 25),
        ("c.ts", "mpeg2video", 25),
    ],
)
def test_total_frames_match_decord(clips, name: str, codec: str, fps: int) -> None:
    decord = pytest.importorskip("decord")
    path = str(clips(name, seconds=1.6, fps=fps, codec=codec))
    info = probe_video(path)
    reader = decord.VideoReader(path)
    assert info.total_frames == len(reader)
    assert info.fps == pytest.approx(reader.get_avg_fps())
    # The index pass load_video uses counts the same.
    assert probe_with_index(path)[0].total_frames == len(reader)


def test_frame_count_from_demux_is_noted(clips) -> None:
    info = probe_video(str(clips("n.mkv", seconds=1.0, fps=10)))
    assert info.total_frames == 10
    assert any("demux" in note for note in info.notes)


def _rotated_copy(source: Path, target: Path, ccw_degrees: int) -> Path:
    """Remux ``source`` with a display matrix (PyAV's rotation is counter-clockwise)."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        copy.set_display_rotation(ccw_degrees)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)
    return target


@pytest.mark.parametrize(("ccw", "clockwise"), [(90, 270), (180, 180), (-90, 90)])
def test_rotation_display_matrix(clips, ccw: int, clockwise: int) -> None:
    rotated = _rotated_copy(clips("a.mp4"), clips.folder / f"rot{ccw}.mp4", ccw)
    info = probe_video(str(rotated))
    assert info.rotation == clockwise
    assert (info.width, info.height) == (W, H)  # coded size stays unrotated
    loaded = load_video(str(rotated), SamplingOptions(nframes=4))
    height, width = loaded.frames.shape[1:3]
    assert (width > height) == (clockwise == 180)  # portrait after a quarter turn
    # Undo the clockwise display turn: np.rot90 turns counter-clockwise.
    assert _indices(loaded.frames, clockwise // 90) == list(loaded.plan.frame_indices)


def test_rotation_matches_decord_pixels(clips) -> None:
    decord = pytest.importorskip("decord")
    rotated = _rotated_copy(clips("a.mp4"), clips.folder / "rot_px.mp4", 90)
    info, index = probe_with_index(str(rotated))
    plan = _plan((0, 7, 13), width=H, height=W)  # display size, no scaling
    ours = decode_frames(str(rotated), plan, rotation=info.rotation, index=index)
    theirs = decord.VideoReader(str(rotated)).get_batch([0, 7, 13]).asnumpy()
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI not installed")
def test_rotation_from_ffmpeg_rotate_tag(clips) -> None:
    target = clips.folder / "rottag.mp4"
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(clips("a.mp4")), "-c", "copy"]
    subprocess.run([*command, "-metadata:s:v", "rotate=90", str(target)], check=True)
    info = probe_video(str(target))
    assert info.rotation in (90, 270)  # ffmpeg versions disagree on the tag's direction
    loaded = load_video(str(target), SamplingOptions(nframes=4))
    assert _indices(loaded.frames, info.rotation // 90) == list(loaded.plan.frame_indices)


# -- decoding: codecs, formats, sizes -------------------------------------------------------

CODECS = [
    ("h264", "libx264", "mp4", 10),
    ("hevc", "libx265", "mp4", 10),
    ("vp8", "libvpx", "webm", 10),
    ("vp9", "libvpx-vp9", "webm", 10),
    ("av1", "libsvtav1", "mkv", 10),
    ("mpeg4", "mpeg4", "avi", 10),
    ("mpeg1video", "mpeg1video", "mpg", 25),  # MPEG-1 allows only the standard frame rates
    ("mpeg2video", "mpeg2video", "mpg", 25),
]


@pytest.mark.parametrize(("codec", "encoder", "ext", "fps"), CODECS, ids=[c[0] for c in CODECS])
def test_decode_exact_frames_per_codec(clips, codec: str, encoder: str, ext: str, fps: int) -> None:
    if not has_encoder(encoder):
        pytest.skip(f"this PyAV build has no {encoder} encoder")
    path = str(clips(f"{codec}.{ext}", seconds=1.2, fps=fps, codec=encoder))
    info, index = probe_with_index(path)
    assert info.codec == codec
    last = info.total_frames - 1
    wanted = (1, 3, 3, 7, last - 1, last)  # not frame 0: the first packet is sent with skipping on
    report = DecodeReport()
    frames = decode_frames(path, _plan(wanted), index=index, report=report)
    assert frames.shape == (len(wanted), 84, 112, 3) and frames.dtype == np.uint8
    assert _indices(frames) == list(wanted)
    assert not report.notes
    loaded = load_video(path, SamplingOptions(fps=4.0))
    assert _indices(loaded.frames) == list(loaded.plan.frame_indices)
    assert loaded.frames.shape[1:3] == (loaded.plan.resized_height, loaded.plan.resized_width)


def test_decode_theora(clips) -> None:
    if has_encoder("libtheora"):
        path = clips("theora.ogv", seconds=1.0, fps=10, codec="libtheora")
    elif shutil.which("ffmpeg") is not None:
        path = clips.folder / "theora.ogv"
        source = clips("theora_src.mkv", seconds=1.0, fps=10, codec="libx264", options={"qp": "0"})
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:v", "libtheora", "-q:v", "9", str(path)],
            check=True,
        )
    else:
        pytest.skip("no Theora encoder: not in this PyAV build, and no ffmpeg CLI")
    info = probe_video(str(path))
    assert info.codec == "theora" and info.total_frames == 10
    loaded = load_video(str(path), SamplingOptions(nframes=6))
    assert _indices(loaded.frames) == list(loaded.plan.frame_indices)


@pytest.mark.parametrize("encoder", ["libx264", "libx265"])
def test_ten_bit(clips, encoder: str) -> None:
    path = str(clips(f"10bit_{encoder}.mp4", seconds=1.0, codec=encoder, pix_fmt="yuv420p10le"))
    info = probe_video(path)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p10le", 10)
    loaded = load_video(path, SamplingOptions(nframes=6))
    assert _indices(loaded.frames) == list(loaded.plan.frame_indices)


@pytest.mark.parametrize(
    ("encoder", "pix_fmt", "ext"),
    [("libvpx-vp9", "yuv420p", "webm"), ("mpeg4", "yuv420p", "avi"), ("libx264", "yuv444p", "mkv")],
)
def test_odd_size(clips, encoder: str, pix_fmt: str, ext: str) -> None:
    size = {"width": 161, "height": 97}
    path = str(clips(f"odd_{encoder}.{ext}", seconds=1.0, codec=encoder, pix_fmt=pix_fmt, **size))
    info = probe_video(path)
    assert (info.width, info.height) == (161, 97)
    frames = decode_frames(path, _plan((0, 5, 9), width=161, height=97))
    assert frames.shape == (3, 97, 161, 3)
    assert _indices(frames) == [0, 5, 9]
    loaded = load_video(path, SamplingOptions(nframes=4))
    assert _indices(loaded.frames) == list(loaded.plan.frame_indices)


def _vfr_clip(path: Path, gaps_ms: list[int]) -> Path:
    """h264 with irregular frame durations (B-frames too), muxed with the real timestamps."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for number, gap in enumerate(gaps_ms):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(number, W, H), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += gap
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate(clips, ext: str) -> None:
    gaps = [40, 40, 120, 40, 80, 33, 33, 200, 40, 40] * 2
    path = str(_vfr_clip(clips.folder / f"vfr.{ext}", gaps))
    info, index = probe_with_index(path)
    assert info.total_frames == len(gaps)
    assert not index.regular and any("constant rate" in note for note in info.notes)
    decord = pytest.importorskip("decord")
    assert info.total_frames == len(decord.VideoReader(path))
    # Slot i of the plan is the frame on screen at its instant i / fps (a frame stamped up to half
    # a tick of the time base later counts as on time).
    starts = np.cumsum([0, *gaps[:-1]]) / 1000
    wanted = (*range(0, len(gaps), 3), len(gaps) - 1)
    slack = float(index.time_base) / 2
    expected = [int(np.searchsorted(starts, i / info.fps + slack, side="right")) - 1 for i in wanted]
    assert expected != list(wanted)  # the check means something: time and order disagree here
    plan = dataclasses.replace(_plan(wanted), video_fps=info.fps)
    for allow_seek in (True, False):
        report = DecodeReport()
        frames = decode_frames(path, plan, index=index, allow_seek=allow_seek, report=report)
        assert _indices(frames) == expected
        assert any("presentation time" in note for note in report.notes)


# -- decoding: seeking, skipping, fallbacks ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encoder", "options"),
    [
        ("gop.mp4", "libx264", {"g": "40"}),
        ("gop.mkv", "libx264", {"g": "40"}),
        ("gop.webm", "libvpx-vp9", {"g": "40"}),
        ("gop_hevc.mp4", "libx265", {"x265-params": "keyint=40:min-keyint=40:log-level=error"}),
    ],
)
def test_seek_path_equals_decode_through(clips, name: str, encoder: str, options: dict[str, str]) -> None:
    path = str(clips(name, seconds=20.0, fps=10, width=96, height=64, codec=encoder, options=options))
    info, index = probe_with_index(path)
    assert info.total_frames == 200 and len(index.keyframes) >= 4
    wanted = (3, 5, 90, 91, 150, 150, 121, 199)  # out of order and repeated on purpose
    plan = _plan(wanted, width=96, height=64)
    seeking, through = DecodeReport(), DecodeReport()
    a = decode_frames(path, plan, index=index, report=seeking)
    b = decode_frames(path, plan, index=index, allow_seek=False, report=through)
    assert seeking.seeks >= 2 and through.seeks == 0
    assert seeking.frames_decoded < through.frames_decoded
    assert np.array_equal(a, b)
    assert _indices(a) == list(wanted)
    assert not seeking.notes and not through.notes


def test_non_reference_frames_are_skipped(clips) -> None:
    # Default x264 settings use B-frames; unneeded non-reference ones are never decoded.
    path = str(clips("bframes.mp4", seconds=3.0, fps=10, options={"bf": "3", "b-pyramid": "none"}))
    report = DecodeReport()
    frames = decode_frames(path, _plan((0, 29)), allow_seek=False, report=report)
    assert _indices(frames) == [0, 29]
    assert report.mode == "indexed" and report.frames_decoded < 30


def test_sequential_mode_when_timestamps_are_unusable(clips) -> None:
    path = str(clips("a.mp4"))
    unreliable = PacketIndex(Fraction(1, 10), (), (), False, 20)
    report = DecodeReport()
    frames = decode_frames(path, _plan((2, 2, 11, 19)), index=unreliable, report=report)
    assert report.mode == "sequential"
    assert _indices(frames) == [2, 2, 11, 19]


def test_avi_with_bframes_falls_back_to_counting(clips) -> None:
    # AVI stores no presentation timestamps: with B-frames the pts PyAV reports are
    # out of order, so frames must be counted, not named by pts.
    path = str(clips("bframes.avi", seconds=2.0, fps=10, codec="libx264"))
    report = DecodeReport()
    frames = decode_frames(path, _plan((0, 4, 9, 15, 19)), report=report)
    assert _indices(frames) == [0, 4, 9, 15, 19]


@pytest.mark.parametrize("sequential", [False, True])
def test_frames_past_the_end_repeat_the_last(clips, sequential: bool) -> None:
    path = str(clips("a.mp4"))
    index = PacketIndex(Fraction(1, 10), (), (), False, 20) if sequential else None
    report = DecodeReport()
    frames = decode_frames(path, _plan((5, 19, 23, 25)), index=index, report=report)
    assert _indices(frames) == [5, 19, 19, 19]
    assert any("repeat" in note for note in report.notes)


def test_resize_modes_are_close(clips) -> None:
    path = str(clips("a.mp4"))
    plan = _plan((0, 10), width=224, height=168)
    reference = decode_frames(path, plan).astype(int)
    fast = decode_frames(path, plan, resize="fast").astype(int)
    assert np.abs(reference - fast).mean() < 4
    assert _indices(fast.astype(np.uint8)) == [0, 10]


# -- errors ---------------------------------------------------------------------------------


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match=r"^video not found: .*nope\.mp4$"):
        probe_video(str(tmp_path / "nope.mp4"))


def test_error_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="a directory"):
        probe_video(str(tmp_path))


def test_error_text_file_named_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(RecordError) as caught:
        load_video(str(fake), SamplingOptions())
    assert str(caught.value) == f"cannot open video: {fake}: Invalid data found when processing input"


def test_error_audio_only(tmp_path: Path) -> None:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10) * 0.3).astype(np.float32)[None, :]
        for start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(RecordError, match=r"^no video stream in .*tone\.m4a \(audio only\?\)$"):
        probe_video(str(path))


def test_error_truncated_mp4(clips, tmp_path: Path) -> None:
    data = clips("a.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    with pytest.raises(RecordError, match=r"^cannot open video: .*cut\.mp4: "):
        load_video(str(cut), SamplingOptions())


def test_truncated_mkv_decodes_what_is_there(clips, tmp_path: Path) -> None:
    data = clips("n.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 2 // 3])
    loaded = load_video(str(cut), SamplingOptions(nframes=4))
    assert 0 < loaded.info.total_frames < 10
    # The cut keeps whole packets in decode order, so with B-frames the surviving frames are
    # not simply the first ones: compare with a plain decode of everything in the cut file.
    # B-frames lost with the cut leave gaps in time, so planned slots are matched by time: the
    # survivor on screen at each slot's instant i / video_fps (up to half a tick late counts).
    with av.open(str(cut)) as container:
        slack = float(container.streams.video[0].time_base) / 2
        decoded = [(f.time, frame_index_of(f.to_ndarray(format="rgb24"))) for f in container.decode(video=0)]
    starts = [time - decoded[0][0] for time, _ in decoded]
    fps = loaded.plan.video_fps
    on_screen = [
        int(np.searchsorted(starts, i / fps + slack, side="right")) - 1 for i in loaded.plan.frame_indices
    ]
    assert _indices(loaded.frames) == [decoded[i][1] for i in on_screen]


def test_error_corrupt_packets(clips, tmp_path: Path) -> None:
    source = clips("a.mp4")
    data = bytearray(source.read_bytes())
    with av.open(str(source)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    noise = np.random.default_rng(0)
    for pos, size in spans:  # keep each NAL length prefix, scramble the payload
        data[pos + 4 : pos + size] = noise.integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "scrambled.mp4"
    bad.write_bytes(bytes(data))
    assert probe_video(str(bad)).total_frames == 20  # the container itself is fine
    with pytest.raises(RecordError, match=r"^corrupt video .*scrambled\.mp4: "):
        load_video(str(bad), SamplingOptions())


# -- load_video, and the probe command --------------------------------------------------------


def test_load_video_imports_no_torch() -> None:
    code = "import sys, vidcap.video.load; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_load_video_segment(clips) -> None:
    path = str(clips("long.mp4", seconds=6.0, fps=10))
    loaded = load_video(path, SamplingOptions(fps=2.0), video_start=2.0, video_end=4.0)
    assert loaded.plan.frame_indices[0] >= 20 and loaded.plan.frame_indices[-1] <= 40
    assert _indices(loaded.frames) == list(loaded.plan.frame_indices)


def _mixed_folder(folder: Path) -> Path:
    made = [
        ("v.mp4", "libx264", 10),
        ("v.mkv", "libx264", 10),
        ("v.webm", "libvpx", 10),
        ("v.avi", "mpeg4", 10),
        ("v.mov", "libx264", 10),
        ("v.mpg", "mpeg1video", 25),
        ("v.ogv", "libvpx", 10),  # VP8 in Ogg: this PyAV build has no Theora encoder
    ]
    for name, codec, fps in made:
        target = folder / "sub" / name if name == "v.mov" else folder / name  # folders are recursed
        make_clip(target, seconds=1.0, fps=fps, codec=codec)
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (folder / "readme.txt").write_text("not a video, and not a video extension")
    return folder


def test_probe_command_json_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vidcap.cli.probe_videos import probe_paths

    folder = _mixed_folder(tmp_path / "mixed")
    code = probe_paths([str(folder)], True, SamplingOptions(), None)
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1  # one unreadable video
    assert len(rows) == 8
    by_name = {Path(row["path"]).name: row for row in rows}
    assert set(by_name) == {"v.mp4", "v.mkv", "v.webm", "v.avi", "v.mov", "v.mpg", "v.ogv", "broken.mp4"}
    assert by_name["broken.mp4"]["error"].startswith("cannot open video: ")
    for name, row in by_name.items():
        if name == "broken.mp4":
            continue
        assert "error" not in row, row
        assert row["width"] == W and row["height"] == H and row["rotation"] == 0
        assert row["nframes"] == len(row["frame_indices"]) == len(row["timestamps"])
        assert row["resized_width"] % 28 == 0 and row["video_tokens"] > 0
    totals = json.loads(err.strip().splitlines()[-1])["totals"]
    assert totals["videos"] == 7 and totals["errors"] == 1
    assert totals["visual_tokens"] == sum(r.get("video_tokens", 0) for r in rows)
    assert totals["largest_video_tokens"] == max(r.get("video_tokens", 0) for r in rows)


def test_probe_command_dataset_and_model_factor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vidcap.cli.probe_videos import probe_paths

    make_clip(tmp_path / "videos" / "a.mp4", seconds=1.0)
    make_clip(tmp_path / "videos" / "b.mkv", seconds=2.0)
    dataset = tmp_path / "data.jsonl"
    # A null video has nothing to probe (run marks it skipped); a record without the key is an
    # input error for both commands (tests/test_cli_terminal.py).
    records = [{"video": "videos/a.mp4"}, {"video": ["videos/b.mkv", "videos/missing.mp4"]}, {"video": None}]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    model = tmp_path / "model"
    model.mkdir()
    vision = {"patch_size": 16, "spatial_merge_size": 2}  # Qwen3-VL: factor 32
    (model / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "vision_config": vision}))

    code = probe_paths([str(dataset)], True, SamplingOptions(), str(model))
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [row["record"] for row in rows] == [0, 1, 1]
    assert rows[2]["error"].startswith("video not found: ")
    assert all(row["resized_width"] % 32 == 0 for row in rows[:2])
    assert json.loads(err.strip().splitlines()[-1])["totals"]["videos"] == 2

    # Without --json: a table on stdout, totals included.
    assert probe_paths([str(dataset)], False, SamplingOptions(), None) == 1
    out, _ = capsys.readouterr()
    assert "a.mp4" in out and "2 videos" in out and "video not found" in out
