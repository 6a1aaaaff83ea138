"""Windows and summaries through the real vLLM engine (tiny random model: captions are noise)."""

from __future__ import annotations

from pathlib import Path

from vidcap.config import RunOptions
from vidcap.engines.caption_engine import CaptionRequest
from vidcap.pipeline.assess import SeenCaptions
from vidcap.pipeline.decode_step import DecodeTask, decode_record
from vidcap.pipeline.windowed import add_summary, assemble_windows, summary_request, window_requests
from vidcap.video.synthetic import make_clip
from vidcap.video.types import SamplingOptions
from vidcap.video.windows import Span

SMALL = SamplingOptions(fps=0.5, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)


def test_text_only_request(vllm_engine) -> None:
    request = CaptionRequest("s", "Summarise: [0:00-0:20] a red square moves.", videos=[])
    (output,) = vllm_engine.generate([request])
    assert output.error is None, output.error
    assert output.request_id == "s" and len(output.texts) == 1
    assert output.prompt_tokens == vllm_engine.count_prompt_tokens(request)
    assert vllm_engine.inspect(request)["videos"] == []


def test_windows_and_summary_through_the_engine(vllm_engine, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "long.mp4", seconds=90, fps=2, width=64, height=48)
    (video,) = decode_record(DecodeTask(index=4, paths=(str(clip),), options=SMALL, window=20.0)).videos
    assert [w.span for w in video.windows] == [
        Span(0, 20),
        Span(20, 40),
        Span(40, 60),
        Span(60, 80),
        Span(80, 90),
    ]
    requests = window_requests(4, video, prompt="Describe the video.")
    for request in requests:  # the engine's count is the plan's, window by window
        assert vllm_engine.inspect(request)["prompt_tokens"] == vllm_engine.count_prompt_tokens(request)
    outputs = {o.request_id: o for o in vllm_engine.generate(requests)}
    assert set(outputs) == {f"4/w{k}" for k in range(5)}
    opts, generation, seen = RunOptions(), vllm_engine.generation, SeenCaptions()
    result = assemble_windows(4, video, outputs, opts=opts, generation=generation, seen=seen)
    assert [(w["start"], w["end"]) for w in result.windows] == [
        (0, 20),
        (20, 40),
        (40, 60),
        (60, 80),
        (80, 90),
    ]
    for window, output in zip(result.windows, (outputs[f"4/w{k}"] for k in range(5)), strict=True):
        assert window["info"]["prompt_tokens"] == output.prompt_tokens > 0
        # Random weights may write an empty caption: that window is an error, as a record would be.
        assert window["status"] == ("ok" if output.texts[0].strip() else "error")
    summary = summary_request(4, result, summary_prompt="Summarise these scenes.")
    if result.status != "ok":
        assert summary is None and "window" in result.error
        return
    assert summary is not None and summary.videos == []
    (output,) = vllm_engine.generate([summary])
    assert output.error is None and output.prompt_tokens == vllm_engine.count_prompt_tokens(summary)
    done = add_summary(result, output, opts=opts, generation=generation, seen=seen)
    assert done.info["prompt_tokens"] == output.prompt_tokens
    assert done.status == ("ok" if output.texts[0].strip() else "error")


def test_text_only_request_on_transformers(tiny_model: Path, tmp_path: Path) -> None:
    from vidcap.config import EngineConfig
    from vidcap.engines.transformers_engine import TransformersEngine
    from vidcap.generation import GenerationOptions

    engine = TransformersEngine(
        EngineConfig(model=str(tiny_model), backend="transformers", device="cpu"),
        GenerationOptions(max_tokens=8, temperature=0.0),
    )
    engine.start(max_videos_per_prompt=1)
    try:
        clip = make_clip(tmp_path / "short.mp4", seconds=8, fps=2, width=64, height=48)
        (video,) = decode_record(DecodeTask(index=0, paths=(str(clip),), options=SMALL, window=4.0)).videos
        text = CaptionRequest("0/summary", "Summarise: [0:00-0:04] a red square moves.", videos=[])
        windows = window_requests(0, video, prompt="Describe.")
        # A summary may share a batch with windows: each gets its own output.
        outputs = {o.request_id: o for o in engine.generate([text, *windows])}
        assert set(outputs) == {"0/summary", "0/w0", "0/w1"}
        for request in [text, *windows]:
            output = outputs[request.request_id]
            assert output.error is None, output.error
            assert output.prompt_tokens == engine.count_prompt_tokens(request)
    finally:
        engine.close()
