"""The frame plan must be qwen-vl-utils 0.0.14 ``fetch_video``'s (decord backend), exactly.

The oracle below calls the reference's own functions (``calculate_video_frame_range``,
``smart_nframes``, ``smart_resize``, ``torch.linspace``); its restatement of fetch_video's
inline pixel bounds is itself checked against ``fetch_video`` run on a fake decoder, and
``fetch_video`` on real clips closes the loop.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import random
import subprocess
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import torch
from qwen_vl_utils import vision_process as ref

from vidcap.errors import RecordError
from vidcap.video.plan import _linspace_f32, frame_indices, plan_frames, smart_resize, video_token_count
from vidcap.video.synthetic import frame_index_of, make_clip
from vidcap.video.types import SamplingOptions, VideoInfo

# torch.linspace differs in the last bit between its FMA kernels (AVX2/AVX512) and the x86
# DEFAULT one; this probe tells which one this torch runs (see plan._linspace_f32).
_PROBE = (74088, 76296, 128)
TORCH_FUSED = bool(np.array_equal(torch.linspace(*_PROBE).numpy(), _linspace_f32(*_PROBE, fused=True)))

FRAME_RATES = [
    23.976, 24000 / 1001, 24, 25, 29.97, 30000 / 1001, 30, 50, 59.94, 60000 / 1001, 60, 1, 120, 0.5,
]  # fmt: skip
SIZES = [
    (1920, 1080), (1280, 720), (640, 480), (160, 120), (3840, 2160), (7680, 4320),  # landscape
    (1080, 1920), (720, 1280), (480, 854),  # portrait
    (97, 61), (333, 187), (1279, 719), (1001, 999),  # odd
    (16, 16), (28, 14), (2, 2), (50, 9),  # tiny
    (4000, 21), (21, 4000), (5000, 30),  # thin, under the 200:1 limit
]  # fmt: skip


def make_info(total: int | None, fps: float | None, width: int = 640, height: int = 480, **kw) -> VideoInfo:
    duration = kw.pop("duration", total / fps if total and fps else None)
    return VideoInfo(
        path="clip.mp4", container="mp4", codec="h264", width=width, height=height,
        rotation=kw.pop("rotation", 0), fps=fps, duration=duration, total_frames=total, **kw,
    )  # fmt: skip


def to_ele(options: SamplingOptions, video_start=None, video_end=None, explicit_defaults=True) -> dict:
    """The fetch_video element dict that means the same as ``options``."""
    ele: dict = {}
    if options.nframes is not None:
        ele["nframes"] = options.nframes
    else:
        if options.fps is not None:
            ele["fps"] = options.fps
        if explicit_defaults or options.min_frames != ref.FPS_MIN_FRAMES:
            ele["min_frames"] = options.min_frames
        if explicit_defaults or options.max_frames != ref.FPS_MAX_FRAMES:
            ele["max_frames"] = options.max_frames
    for key in ("min_pixels", "max_pixels", "total_pixels"):
        if getattr(options, key) is not None:
            ele[key] = getattr(options, key)
    if video_start is not None:
        ele["video_start"] = video_start
    if video_end is not None:
        ele["video_end"] = video_end
    return ele


def reference_plan(total: int, fps: float, ele: dict, width: int, height: int, factor: int) -> dict:
    """What fetch_video plans for a decord reader with ``len(vr) == total`` and this fps."""
    start, end, seg_total = ref.calculate_video_frame_range(ele, total, fps)
    nframes = ref.smart_nframes(ele, total_frames=seg_total, video_fps=fps)
    indices = torch.linspace(start, end, nframes).round().long().tolist()
    # fetch_video's inline bounds, restated (test_fake_decoder_fetch_video checks this copy).
    min_pixels = ele.get("min_pixels", ref.VIDEO_MIN_TOKEN_NUM * factor * factor)
    total_pixels = ele.get("total_pixels", ref.MODEL_SEQ_LEN * factor * factor * 0.9)
    max_pixels = max(
        min(ref.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / nframes * ref.FRAME_FACTOR),
        int(min_pixels * 1.05),
    )
    max_pixels = min(ele.get("max_pixels", max_pixels), max_pixels)
    resized = ref.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return {
        "nframes": nframes, "indices": indices, "total_frames": seg_total,
        "sample_fps": nframes / max(seg_total, 1e-6) * fps, "size": resized,
    }  # fmt: skip


def random_case(rng: random.Random) -> tuple[VideoInfo, SamplingOptions, float | None, float | None]:
    fps = rng.choice(FRAME_RATES)
    seconds = rng.choice([rng.uniform(0.05, 5), rng.uniform(5, 120), rng.uniform(120, 3 * 3600)])
    total = max(1, round(seconds * fps) + rng.choice([0, 0, 0, -1, 1]))
    width, height = rng.choice(SIZES)
    pixels = {}
    factor = rng.choice([28, 32])
    if rng.random() < 0.3:
        pixels["min_pixels"] = rng.choice([4, 64, 128, 256, 1024]) * factor**2 + rng.randint(0, 50)
    if rng.random() < 0.3:
        pixels["max_pixels"] = rng.choice([16, 128, 256, 768, 2048, 16384]) * factor**2 + rng.randint(0, 50)
        if pixels["max_pixels"] < pixels.get("min_pixels", 0) and rng.random() < 0.8:
            del pixels["max_pixels"]  # keep some bad bounds pairs, not a fifth of all cases
    if rng.random() < 0.3:
        pixels["total_pixels"] = rng.choice([2048, 20480, 24576, 100000]) * factor**2 * rng.choice([1, 0.9])
    if rng.random() < 0.25:
        sampling = {"fps": None, "nframes": rng.choice([rng.randint(1, 40), rng.randint(1, 2000)])}
    else:
        sampling = {
            "fps": rng.choice([2.0, 2.0, 1.0, 0.5, 4.0, 0.1, 30.0, 2.5, 1 / 3]),
            "min_frames": rng.choice([4, 4, 1, 2, 3, 8, 15, 64]),
            "max_frames": rng.choice([768, 768, 16, 33, 64, 128, 255, 1024]),
        }
    options = SamplingOptions(**sampling, **pixels, image_factor=factor)
    start = end = None
    if rng.random() < 0.4:
        length = total / fps
        start = rng.choice([None, rng.uniform(0, length * 0.9), 0.0])
        end = rng.choice([None, rng.uniform(0, length * 1.1), length, length + 5])
        if start is not None and end is not None and end < start:
            start, end = end, start
    return make_info(total, fps, width, height), options, start, end


def compare(info: VideoInfo, options: SamplingOptions, start=None, end=None, explicit=True) -> str | None:
    """None when plan_frames agrees with the reference (or sanely covers its failure), else why not."""
    ele = to_ele(options, start, end, explicit)
    try:
        want = reference_plan(info.total_frames, info.fps, ele, info.width, info.height, options.image_factor)
    except (ValueError, AssertionError):
        want = None
    try:
        got = plan_frames(info, options, video_start=start, video_end=end)
    except (RecordError, ValueError) as error:
        return None if want is None else f"we raised {error!r}, the reference planned {want}"
    if want is None:  # the reference fails: ours must say what it assumed
        return None if got.notes and got.nframes >= 2 and got.nframes % 2 == 0 else f"silent plan {got}"
    rh, rw = want["size"]
    # Where the reference shrinks a thin frame's side to 0 (unusable), we keep one patch.
    want_size = (rh or options.image_factor, rw or options.image_factor)
    have = {
        "nframes": got.nframes, "indices": list(got.frame_indices), "total_frames": got.total_frames,
        "sample_fps": got.sample_fps, "size": (got.resized_height, got.resized_width),
    }  # fmt: skip
    if have != {**want, "size": want_size}:
        return f"plan {have} != reference {want}"
    clamped_end = end is not None and end > info.total_frames / info.fps
    if bool(got.notes) != clamped_end:
        return f"unexpected notes {got.notes}"
    return None


def test_frame_indices_match_torch_linspace():
    rng = random.Random(7)
    cases = [(0, 1, 3), (0, 9, 3), (0, 0, 4), (5, 5, 1), (0, 10, 0), (9, 0, 4), _PROBE]
    cases += [(2**22, 2**22 + 1, 1000), (16_000_000, 16_000_003, 700), (7_777_777, 7_777_778, 3001)]
    for _ in range(6000):
        start = rng.choice([0, 0, rng.randint(0, 300), rng.randint(0, 200_000), rng.randint(0, 2**24)])
        span = rng.choice([rng.randint(0, 40), rng.randint(1, 3000), rng.randint(1, 500_000)])
        cases.append((start, start + span, rng.choice([rng.randint(1, 40), rng.randint(2, 1000)])))
    wrong = []
    for start, end, n in cases:
        expected = torch.linspace(start, end, n)
        values = _linspace_f32(start, end, n, fused=TORCH_FUSED)
        if not np.array_equal(expected.numpy().view(np.int32), values.view(np.int32)):
            wrong.append(("value", start, end, n))
        if frame_indices(start, end, n, fused=TORCH_FUSED) != expected.round().long().tolist():
            wrong.append(("index", start, end, n))
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. {wrong[:5]}"


def test_frame_indices_round_half_to_even():
    assert frame_indices(0, 9, 3) == [0, 4, 9]  # 4.5 -> 4
    assert frame_indices(0, 3, 3) == [0, 2, 3]  # 1.5 -> 2
    assert frame_indices(10, 10, 1) == [10]
    assert frame_indices(0, 5, 0) == []


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 kernel choice")
def test_unfused_mode_matches_torch_default_kernel():
    script = (
        "import random, sys, torch\n"
        "from vidcap.video.plan import frame_indices\n"
        "assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT'\n"
        "rng = random.Random(3); bad = 0\n"
        "for _ in range(3000):\n"
        "    a = rng.randint(0, 200000); b = a + rng.randint(1, 3000); n = rng.randint(2, 800)\n"
        "    bad += frame_indices(a, b, n, fused=False) != torch.linspace(a, b, n).round().long().tolist()\n"
        "sys.exit(bad)\n"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:] or f"{result.returncode} cases differ"


def test_smart_resize_matches_reference():
    rng = random.Random(11)
    sizes = [(h, w) for w, h in SIZES] + [(rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(1500)]
    checked = 0
    for height, width in sizes:
        for factor in (28, 32):
            for bounds in [(None, None), (128 * factor**2, 768 * factor**2), (4 * factor**2, 16 * factor**2)]:
                if max(height, width) / min(height, width) > ref.MAX_RATIO:
                    with pytest.raises(ValueError):
                        smart_resize(height, width, factor, *bounds)
                    continue
                rh, rw = ref.smart_resize(height, width, factor, *bounds)
                assert smart_resize(height, width, factor, *bounds) == (rh or factor, rw or factor)
                checked += 1
    assert checked > 5000


def test_plan_matches_reference_on_grid():
    failures, count = [], 0
    for fps in FRAME_RATES:
        for seconds in (0.1, 1.0, 2.05, 7.3, 61.0, 1800.0):
            total = max(1, round(seconds * fps))
            for width, height in SIZES[::3]:
                for sampling in ({"fps": 2.0}, {"fps": None, "nframes": 8}, {"fps": 1.0, "max_frames": 64}):
                    for factor in (28, 32):
                        options = SamplingOptions(**sampling, image_factor=factor)
                        info = make_info(total, fps, width, height)
                        for explicit in (True, False):
                            count += 1
                            if (why := compare(info, options, explicit=explicit)) is not None:
                                failures.append((fps, seconds, width, height, sampling, factor, why))
    assert count > 3000
    assert not failures, f"{len(failures)} of {count} differ, e.g. {failures[:3]}"


def test_plan_matches_reference_on_random_cases():
    rng = random.Random(2024)
    failures = []
    for number in range(4000):
        info, options, start, end = random_case(rng)
        if (why := compare(info, options, start, end)) is not None:
            failures.append(
                (number, info.total_frames, info.fps, info.width, info.height, options, start, end, why)
            )
    assert not failures, f"{len(failures)} of 4000 differ, e.g. {failures[:3]}"


def test_rotation_uses_display_size():
    info = make_info(300, 30.0, 1920, 1080, rotation=90)
    plan = plan_frames(info, SamplingOptions())
    want = reference_plan(300, 30.0, to_ele(SamplingOptions()), 1080, 1920, 28)
    assert (plan.resized_height, plan.resized_width) == want["size"]
    assert plan.resized_height > plan.resized_width


def _fake_decord(total: int, fps: float, width: int, height: int, seen: list) -> types.SimpleNamespace:
    class VideoReader:
        def __init__(self, path: str) -> None:
            pass

        def __len__(self) -> int:
            return total

        def get_avg_fps(self) -> float:
            return fps

        def get_batch(self, indices):
            seen.append(list(indices))
            frames = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (len(indices), height, width, 3))
            return types.SimpleNamespace(asnumpy=lambda: frames)

    return types.SimpleNamespace(VideoReader=VideoReader)


def test_fake_decoder_fetch_video(monkeypatch):
    """fetch_video itself (not the oracle) on a stand-in decord that reports total and fps."""
    monkeypatch.setattr(ref, "get_video_reader_backend", lambda: "decord")
    # Skip the real resize: only the target size matters, and 4K frames are slow to resample.
    fake_resize = lambda video, size, **_: torch.zeros(1).expand(video.shape[0], video.shape[1], *size)  # noqa: E731
    monkeypatch.setattr(ref.transforms.functional, "resize", fake_resize)
    rng = random.Random(5)
    checked = 0
    while checked < 150:
        info, options, start, end = random_case(rng)
        ele = to_ele(options, start, end)
        try:
            want = reference_plan(
                info.total_frames, info.fps, ele, info.width, info.height, options.image_factor
            )
        except (ValueError, AssertionError):
            continue
        if want["nframes"] * info.width * info.height > 30_000_000 or 0 in want["size"]:
            continue  # keep the fake frames small
        seen: list = []
        monkeypatch.setitem(
            sys.modules, "decord", _fake_decord(info.total_frames, info.fps, info.width, info.height, seen)
        )
        (video, meta), sample_fps = ref.fetch_video(
            {"video": "clip.mp4", **ele}, image_patch_size=options.image_factor // 2,
            return_video_sample_fps=True, return_video_metadata=True,
        )  # fmt: skip
        plan = plan_frames(info, options, video_start=start, video_end=end)
        assert meta["video_backend"] == "decord"
        assert seen == [meta["frames_indices"]] == [list(plan.frame_indices)]
        assert tuple(video.shape) == (plan.nframes, 3, plan.resized_height, plan.resized_width)
        assert (meta["total_num_frames"], sample_fps) == (plan.total_frames, plan.sample_fps)
        checked += 1


NTSC = Fraction(30000, 1001)
CLIPS = [  # name, make_clip arguments, fetch_video options, video_start, video_end
    ("plain.mp4", {"seconds": 3.0, "fps": 10}, {"fps": 2.0}, None, None),
    ("ntsc.mp4", {"seconds": 2.0, "fps": NTSC, "width": 144, "height": 96}, {"nframes": 6}, 0.4, 1.7),
    ("odd.mp4", {"seconds": 2.5, "fps": 24, "width": 97, "height": 61, "pix_fmt": "yuv444p"},
     {"fps": 4.0}, 0.5, None),
    ("portrait.mp4", {"seconds": 1.5, "fps": 25, "width": 96, "height": 160},
     {"fps": 2.0, "min_pixels": 3136, "max_pixels": 20000}, None, 1.0),
]  # fmt: skip


@pytest.mark.parametrize(("name", "clip", "ele", "start", "end"), CLIPS, ids=[c[0] for c in CLIPS])
def test_fetch_video_on_real_clips(tmp_path, monkeypatch, name, clip, ele, start, end):
    import decord

    monkeypatch.setattr(ref, "get_video_reader_backend", lambda: "decord")
    path = str(make_clip(tmp_path / name, **clip))
    options = SamplingOptions(**({"fps": None} if "nframes" in ele else {}), **ele)
    video, meta = ref.fetch_video(
        {"video": path, **to_ele(options, start, end, False)}, return_video_metadata=True
    )
    reader = decord.VideoReader(path)
    height, width = reader[0].shape[:2]
    info = make_info(len(reader), reader.get_avg_fps(), width, height)
    plan = plan_frames(info, options, video_start=start, video_end=end)
    assert meta["video_backend"] == "decord"
    assert list(plan.frame_indices) == meta["frames_indices"]
    assert (plan.total_frames, plan.video_fps) == (meta["total_num_frames"], meta["fps"])
    assert tuple(video.shape) == (plan.nframes, 3, plan.resized_height, plan.resized_width)
    assert plan.notes == ()
    # The frames fetch_video decoded are the ones planned (the clip paints its index in each).
    frames = video.clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert [frame_index_of(frame) for frame in frames] == list(plan.frame_indices)


def test_one_frame_video_repeats_the_frame():
    info = make_info(1, 25.0)
    with pytest.raises(ValueError):  # the reference cannot plan it
        ref.smart_nframes({"fps": 2.0}, total_frames=1, video_fps=25.0)
    for options in (SamplingOptions(), SamplingOptions(fps=None, nframes=8)):
        plan = plan_frames(info, options)
        assert (plan.nframes, plan.frame_indices, plan.total_frames) == (2, (0, 0), 1)
        assert plan.timestamps == (0.0, 0.0)
        assert plan.video_tokens == video_token_count(2, plan.resized_height, plan.resized_width, 28)
        assert any("1 frame" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("fps", "note"),
    [(None, "missing"), (0.0, "missing"), (90000.0, "implausible"), (float("nan"), "implausible"),
     (60.0, "implausible")],
)  # fmt: skip
def test_bad_frame_rate_is_derived_from_count_and_duration(fps, note):
    info = make_info(300, fps, duration=10.0)  # 300 frames in 10 s: 30 fps, whatever the header says
    plan = plan_frames(info, SamplingOptions())
    assert plan.video_fps == 30.0
    assert dataclasses.replace(plan, notes=()) == plan_frames(make_info(300, 30.0), SamplingOptions())
    assert plan.frame_indices == tuple(reference_plan(300, 30.0, {"fps": 2.0}, 640, 480, 28)["indices"])
    assert len(plan.notes) == 1 and note in plan.notes[0] and "30.000 fps" in plan.notes[0]


def test_frame_rate_close_to_count_over_duration_is_kept():
    # Durations measured first-to-last frame are a frame short; that is not an inconsistency.
    for total, fps, duration in [(2, 30.0, 1 / 30), (300, 29.97, 10.0), (61, 30.0, 2.0), (10, 25.0, 0.36)]:
        assert plan_frames(make_info(total, fps, duration=duration), SamplingOptions()).video_fps == fps


def test_unknown_frame_count_is_estimated():
    plan = plan_frames(make_info(None, 25.0, duration=8.0), SamplingOptions())
    assert plan.total_frames == 200 and plan.nframes == 16
    assert plan.notes == ("Frame count unknown; estimated 200 from 8.0 s at 25.000 fps.",)


def test_count_only_assumes_a_frame_rate():
    plan = plan_frames(make_info(90, None, duration=None), SamplingOptions())
    assert plan.video_fps == 30.0 and plan.nframes == 6
    assert "assumed 30 fps" in plan.notes[0]


CANNOT = "cannot plan frames: the stream reports neither "


@pytest.mark.parametrize(
    ("total", "fps", "duration", "message"),
    [
        (None, None, None, CANNOT + "frame rate, duration nor frame count"),
        (None, 25.0, None, CANNOT + "duration nor frame count"),
        (None, None, 8.0, CANNOT + "a usable frame rate nor frame count"),
    ],
)
def test_unplannable_streams(total, fps, duration, message):
    with pytest.raises(RecordError) as caught:
        plan_frames(make_info(total, fps, duration=duration), SamplingOptions())
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (12.0, None, "video_start 12.0 s is past the end of the 8.0 s video"),
        (8.0, None, "video_start 8.0 s is past the end of the 8.0 s video"),
        (5.0, 3.0, "video_start 5.0 s is not before video_end 3.0 s"),
        (2.5, 2.5, "video_start 2.5 s is not before video_end 2.5 s"),
        (-1.0, 3.0, "video_start -1.0 s is negative"),
        (None, 0.0, "video_end 0.0 s is not after the start of the video"),
        (float("nan"), None, "video_start nan is not a number of seconds"),
    ],
)
def test_bad_segments_are_record_errors(start, end, message):
    with pytest.raises(RecordError) as caught:
        plan_frames(make_info(200, 25.0), SamplingOptions(), video_start=start, video_end=end)
    assert str(caught.value) == message


def test_segment_end_past_the_video_is_clamped_like_the_reference():
    info = make_info(200, 25.0)
    plan = plan_frames(info, SamplingOptions(), video_start=2.0, video_end=30.0)
    want = reference_plan(200, 25.0, {"video_start": 2.0, "video_end": 30.0}, 640, 480, 28)
    assert (list(plan.frame_indices), plan.total_frames) == (want["indices"], want["total_frames"])
    assert plan.notes == ("video_end 30.0 s is past the end of the 8.0 s video; used the end.",)


def test_segments_too_short_for_the_reference():
    info = make_info(200, 25.0)
    one = plan_frames(info, SamplingOptions(), video_start=1.0, video_end=1.02)  # frame 25 starts in it
    none = plan_frames(info, SamplingOptions(), video_start=1.01, video_end=1.02)  # no frame starts in it
    for plan, frame in ((one, 25), (none, 25)):
        assert (plan.frame_indices, plan.total_frames, plan.nframes) == ((frame, frame), 1, 2)
        assert plan.notes and "fewer than 2 frames" in plan.notes[0]
    with pytest.raises(ValueError):
        ref.calculate_video_frame_range({"video_start": 1.0, "video_end": 1.02}, 200, 25.0)


@pytest.mark.parametrize(
    ("options", "used"),
    [
        (SamplingOptions(fps=None, nframes=500), 200),  # more than the video has
        (SamplingOptions(fps=None, nframes=1), 2),  # rounds to 0 in the reference
        (SamplingOptions(max_frames=1), 2),
    ],
)
def test_frame_counts_the_reference_rejects_are_clamped(options, used):
    plan = plan_frames(make_info(200, 25.0), options)
    assert plan.nframes == used == len(plan.frame_indices)
    assert plan.notes == (f"Sampling gives {0 if used == 2 else 500} frames, outside 2..200; used {used}.",)


def test_config_errors_are_value_errors():
    info = make_info(200, 25.0)
    for options in (
        SamplingOptions(fps=2.0, nframes=8),  # both given
        SamplingOptions(fps=0.0),
        SamplingOptions(fps=None, nframes=0),
        SamplingOptions(min_pixels=200_000, max_pixels=100_000),
    ):
        with pytest.raises(ValueError):
            plan_frames(info, options)
    assert plan_frames(info, SamplingOptions(nframes=8)).nframes == 8  # nframes alone replaces fps 2.0


def test_extreme_aspect_ratio_is_a_record_error():
    with pytest.raises(RecordError, match="more than 200:1"):
        plan_frames(make_info(200, 25.0, 5000, 20), SamplingOptions())


def test_video_token_count():
    assert video_token_count(8, 448, 448, 28) == 4 * 16 * 16
    assert video_token_count(16, 320, 512, 32) == 8 * 10 * 16
    assert video_token_count(3, 28, 56, 28) == 2 * 1 * 2  # an odd frame count pads to a whole pair
    plan = plan_frames(make_info(300, 30.0, 1280, 720), SamplingOptions())
    assert plan.video_tokens == plan.nframes // 2 * (plan.resized_height // 28) * (plan.resized_width // 28)
    assert plan.timestamps == tuple(i / 30.0 for i in plan.frame_indices)


def test_bogus_duration_does_not_override_a_plausible_frame_rate() -> None:
    """An MPEG-1 elementary stream (Debian's gem-doc alea.mpg) reports 25 fps, 162 frames and
    0.02 s: the duration is what is broken, so the plan is the reference's (fps x frames)."""
    info = VideoInfo(
        path="alea.mpg", container="mpegvideo", codec="mpeg1video", width=320, height=240,
        rotation=0, fps=25.0, duration=0.02, total_frames=162,
    )  # fmt: skip
    plan = plan_frames(info, SamplingOptions())
    assert plan.nframes == 12 and plan.video_fps == 25.0
    assert plan.frame_indices == tuple(frame_indices(0, 161, 12))
    assert any("trusted the frame rate" in note for note in plan.notes)
