"""A windowed record's requests, its ``windows`` field and status, and the summary request."""

from __future__ import annotations

import numpy as np

from vidcap.config import RunOptions
from vidcap.engines.caption_engine import CaptionEngine, CaptionOutput, CaptionRequest
from vidcap.generation import GenerationOptions
from vidcap.pipeline.assemble import output_record
from vidcap.pipeline.assess import SeenCaptions
from vidcap.pipeline.windowed import (
    WINDOWS_KEY,
    add_summary,
    assemble_windows,
    record_of_request,
    summary_request,
    window_request_id,
    window_requests,
)
from vidcap.video.load import LoadedWindow, WindowedVideo
from vidcap.video.types import SamplingOptions, VideoInfo
from vidcap.video.windows import plan_windows

OPTS = RunOptions()
GEN = GenerationOptions()


def _video(seconds: float = 50, window: float = 20) -> WindowedVideo:
    info = VideoInfo("v.mp4", "mp4", "h264", 160, 120, 0, 10.0, seconds, round(seconds * 10))
    whole, plans = plan_windows(info, SamplingOptions(fps=0.5), window)
    windows = [
        LoadedWindow(
            p.span,
            p.plan,
            np.zeros((p.plan.nframes, p.plan.resized_height, p.plan.resized_width, 3), np.uint8),
        )
        for p in plans
    ]
    return WindowedVideo(info=info, plan=whole, windows=windows)


def _ok(request_id: str, text: str, reason: str = "stop") -> CaptionOutput:
    return CaptionOutput(
        request_id, texts=[text], prompt_tokens=100, generated_tokens=5, finish_reasons=[reason]
    )


def test_one_request_per_window_with_its_frames() -> None:
    video = _video()
    requests = window_requests(7, video, prompt="Describe.", system_prompt="Be brief.")
    assert [r.request_id for r in requests] == ["7/w0", "7/w1", "7/w2"]
    assert [record_of_request(r.request_id) for r in requests] == [7, 7, 7]
    for request, window in zip(requests, video.windows, strict=True):
        assert request.prompt == "Describe." and request.system_prompt == "Be brief."
        (sent,) = request.videos
        assert sent.frames is window.frames
        assert sent.metadata == window.plan.processor_metadata()
        assert sent.video_tokens == window.plan.video_tokens
        assert window.span.start <= min(sent.metadata["frames_indices"]) / sent.metadata["fps"]


def test_all_windows_ok() -> None:
    video = _video()
    outputs = {window_request_id(7, k): _ok(window_request_id(7, k), f"scene {k}") for k in range(3)}
    outputs["7/w2"].finish_reasons = ["length"]
    result = assemble_windows(7, video, outputs, opts=OPTS, generation=GEN, seen=SeenCaptions())
    assert result.status == "ok" and result.error is None
    assert [(w["start"], w["end"]) for w in result.windows] == [(0, 20), (20, 40), (40, 50)]
    assert [w["caption"] for w in result.windows] == ["scene 0", "scene 1", "scene 2"]
    assert all(w["status"] == "ok" and "error" not in w for w in result.windows)
    assert result.windows[2]["info"]["flags"] == ["truncated"]
    assert result.caption == "[0:00-0:20] scene 0\n[0:20-0:40] scene 1\n[0:40-0:50] scene 2"
    assert result.info == {
        "finish_reason": None,
        "prompt_tokens": 300,
        "generated_tokens": 15,
        "flags": ["truncated"],
    }
    record = output_record(
        {"video": "v.mp4"},
        OPTS,
        status=result.status,
        caption=result.caption,
        error=result.error,
        extra=result.fields(),
    )
    assert list(record) == ["video", "caption", "status", "error", "info", WINDOWS_KEY]


def test_window_bounds_are_written_to_the_microsecond() -> None:
    """A video's length is its frame count over its frame rate, a float with a long tail
    (887 frames at 30000/1001 fps is 29.596233333...); the windows field stops at the microsecond."""
    info = VideoInfo("v.mp4", "mp4", "h264", 160, 120, 0, 30000 / 1001, 29.6, 887)
    whole, plans = plan_windows(info, SamplingOptions(fps=0.5), 20)
    assert plans[-1].span.end == 887 / (30000 / 1001)  # the plan keeps the exact value
    video = WindowedVideo(
        info=info,
        plan=whole,
        windows=[LoadedWindow(p.span, p.plan, np.zeros((1, 2, 2, 3), np.uint8)) for p in plans],
    )
    outputs = {window_request_id(0, k): _ok(window_request_id(0, k), "x") for k in range(len(plans))}
    result = assemble_windows(0, video, outputs, opts=OPTS, generation=GEN, seen=SeenCaptions())
    assert [(w["start"], w["end"]) for w in result.windows] == [(0, 29.596233)]


def test_a_failed_window_fails_the_record_and_names_it() -> None:
    video = _video()
    outputs = {
        "7/w0": _ok("7/w0", "scene"),
        "7/w1": CaptionOutput("7/w1", error="prompt too long: 9000 tokens"),
        "7/w2": _ok("7/w2", "  "),
    }
    result = assemble_windows(7, video, outputs, opts=OPTS, generation=GEN, seen=SeenCaptions())
    assert result.status == "error" and result.caption is None
    assert result.error == "2 of 3 windows failed ([0:20-0:40], [0:40-0:50]): prompt too long: 9000 tokens"
    assert [w["status"] for w in result.windows] == ["ok", "error", "error"]
    assert result.windows[2]["error"] == "the model returned an empty caption"
    assert result.windows[2]["info"]["flags"] == ["empty"]
    assert summary_request(7, result, summary_prompt="Summarise.") is None


def test_run_key_names_inside_windows_and_duplicates_across_windows() -> None:
    opts = RunOptions(output_key="desc", status_key="st", error_key="err", info_key="meta")
    outputs = {f"1/w{k}": _ok(f"1/w{k}", "same words") for k in range(3)}
    result = assemble_windows(1, _video(), outputs, opts=opts, generation=GEN, seen=SeenCaptions())
    assert set(result.windows[0]) == {"start", "end", "desc", "st", "meta"}
    assert [w["meta"]["flags"] for w in result.windows] == [[], ["duplicate"], ["duplicate"]]
    assert result.fields()["meta"]["flags"] == ["duplicate"]


def test_summary_request_and_its_caption() -> None:
    video = _video()
    outputs = {f"3/w{k}": _ok(f"3/w{k}", f"part {k}\nmore") for k in range(3)}
    seen = SeenCaptions()
    result = assemble_windows(3, video, outputs, opts=OPTS, generation=GEN, seen=seen)
    request = summary_request(3, result, summary_prompt="Summarise the video.", system_prompt="S")
    assert request is not None
    assert request.request_id == "3/summary" and record_of_request(request.request_id) == 3
    assert request.videos == [] and request.system_prompt == "S"
    assert request.prompt == (
        "Summarise the video.\n\n[0:00-0:20] part 0 more\n[0:20-0:40] part 1 more\n[0:40-0:50] part 2 more"
    )
    done = add_summary(result, _ok("3/summary", "The whole video."), opts=OPTS, generation=GEN, seen=seen)
    assert done.status == "ok" and done.caption == "The whole video."
    assert done.info["finish_reason"] == "stop" and done.info["prompt_tokens"] == 100
    assert done.prompt_tokens == 400 and done.generated_tokens == 20  # windows + summary
    failed = assemble_windows(3, video, outputs, opts=OPTS, generation=GEN, seen=SeenCaptions())
    failed = add_summary(
        failed, CaptionOutput("3/summary", error="boom"), opts=OPTS, generation=GEN, seen=seen
    )
    assert failed.status == "error" and failed.caption is None and failed.error == "summary failed: boom"
    assert [w["caption"] for w in failed.windows] == ["part 0\nmore", "part 1\nmore", "part 2\nmore"]


def test_structured_and_several_captions_in_timed_text() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    gen = GenerationOptions(json_schema=schema)
    outputs = {f"0/w{k}": _ok(f"0/w{k}", f'{{"a": {k}}}') for k in range(3)}
    result = assemble_windows(0, _video(), outputs, opts=OPTS, generation=gen, seen=SeenCaptions())
    assert result.windows[1]["caption"] == {"a": 1}
    assert result.caption.splitlines()[1] == '[0:20-0:40] {"a":1}'
    outputs["0/w1"] = _ok("0/w1", "not json")
    result = assemble_windows(0, _video(), outputs, opts=OPTS, generation=gen, seen=SeenCaptions())
    assert result.windows[1]["caption_raw"] == "not json" and result.status == "error"
    several = GenerationOptions(num_captions=2)
    outputs = {f"0/w{k}": CaptionOutput(f"0/w{k}", texts=[f"x{k}", f"y{k}"]) for k in range(3)}
    result = assemble_windows(0, _video(), outputs, opts=OPTS, generation=several, seen=SeenCaptions())
    assert result.windows[0]["caption"] == ["x0", "y0"]
    assert result.caption.splitlines()[0] == "[0:00-0:20] x0"


class _EchoEngine(CaptionEngine):
    """A fake engine for the error paths: answers each request with its id, counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def start(self, *, max_videos_per_prompt: int) -> None:
        """Nothing to load."""

    def count_prompt_tokens(self, request: CaptionRequest) -> int:
        """Not used here."""
        return 0

    def generate(self, requests: list[CaptionRequest]) -> list[CaptionOutput]:
        """One text per request: its id."""
        self.calls.append([r.request_id for r in requests])
        return [_ok(r.request_id, f"text of {r.request_id}") for r in requests]
