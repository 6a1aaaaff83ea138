"""Each run option is one row of vidcap.option_table: the flags of run/probe/report, the config
keys and the fingerprint all come from it (issue 16), and the help and fingerprint are as before."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from vidcap.cli.app import app
from vidcap.cli.help import REQUIRED
from vidcap.config import DERIVED, KEY_GROUP, OPTION_GROUP, RunConfig, build_config, load_config_file
from vidcap.errors import VidcapError
from vidcap.io.shards import InputSpan
from vidcap.option_table import ALWAYS, BY_KEY, OPTIONS, WHEN_SET
from vidcap.pipeline.fingerprint import run_fingerprint

GROUPS = typing.get_type_hints(RunConfig)  # run, engine, generation, sampling -> their classes


def _command_options(name: str) -> dict[str, typing.Any]:
    """The click options of ``vidcap NAME`` by their Python name (--help left out)."""
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params if p.param_type_name == "option" and p.name != "help"}


def test_every_option_field_is_one_row_and_every_row_a_field() -> None:
    assert len(BY_KEY) == len(OPTIONS)  # no key twice
    fields = {(group, f.name) for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}
    options = fields - DERIVED
    # The one name two groups share: the engine's --family (an option), the sampling's (set from the model).
    assert {name for _, name in options} == set(BY_KEY)
    assert {(OPTION_GROUP[key], key) for key in BY_KEY} == options


def test_config_keys_are_the_rows_a_file_may_set(tmp_path: Path) -> None:
    assert set(KEY_GROUP) == {o.key for o in OPTIONS if o.config}
    config_only = [o.key for o in OPTIONS if o.config and not o.flag]
    assert "decode_threads" in config_only and "engine_kwargs" in config_only
    path = tmp_path / "c.toml"
    path.write_text("decode_threads = 3\nmax-model-len = 4096\n[engine_kwargs]\nmax_num_seqs = 4\n")
    config = build_config(load_config_file(path), {"max_model_len": 2048})  # the flag wins over the file
    assert (config.run.decode_threads, config.engine.max_model_len) == (3, 2048)
    assert config.engine.engine_kwargs == {"max_num_seqs": 4}
    for internal in (o.key for o in OPTIONS if not o.config):  # set by vidcap or the Python API only
        path.write_text(f"{internal} = 1\n")
        with pytest.raises(VidcapError, match=f"unknown key '{internal}'"):
            load_config_file(path)


def test_run_probe_and_report_flags_are_the_rows() -> None:
    run = _command_options("run")
    assert set(run) - {"config", "quiet", "verbose"} == {o.key for o in OPTIONS if o.flag}
    for key, param in run.items():
        if key in BY_KEY:
            row = BY_KEY[key]
            assert param.help == (f"{row.help} {REQUIRED}" if row.run_requires else row.help), key
            assert param.rich_help_panel == row.panel, key  # type: ignore[attr-defined]
            assert not row.flags or list(row.flags) == [*param.opts, *param.secondary_opts], key
    sampling = {o.key for o in OPTIONS if o.flag and OPTION_GROUP[o.key] == "sampling"}
    assert sampling == {"fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels"} | {
        "total_pixels"
    }
    for name, shared in (("probe", {"model", "family", "max_model_len"}), ("report", {"model"})):
        params = _command_options(name)
        for key in shared | sampling:  # the same flag as run's, but for run's "Required" note
            assert params[key].opts == run[key].opts and params[key].help == BY_KEY[key].help, (name, key)
            assert params[key].type_descriptor.annotation == run[key].type_descriptor.annotation, (name, key)


def test_run_help_is_unchanged() -> None:
    """A few entries of `vidcap run --help` as they were before the table (80 columns)."""
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=78)
    assert result.exit_code == 0, result.output
    text = result.output
    for entry in (
        "  -m, --model NAME|DIR            Hugging Face model id or local folder, e.g.\n"
        "                                  Qwen/Qwen2.5-VL-7B-Instruct. Required, here\n"
        "                                  or in --config.\n",
        "  --on-missing-video <record|error>\n"
        "                                  A video file missing or unreadable before\n",
        "  --enforce-eager / --no-enforce-eager\n                                  Disable CUDA graphs",
        "  --fail-on FLAGS                 Quality flags that make a caption an error,\n",
        "  --json-schema FILE     JSON Schema file: captions are generated as JSON\n",
        "  --no-video             A text-only pass (e.g. refining captions with a text\n",
        "Frame sampling:\n  --fps <float>         Frames sampled per second of video (default: 2.0).\n",
        "  --backend <vllm|transformers|openai>\n"
        "                                  The engine (default: vllm).\n",
    ):
        assert entry in text, entry
    headings = [
        line[:-1]
        for line in text.split("\nExamples:")[0].splitlines()
        if line.endswith(":") and line[0] != " "
    ]
    assert headings == [
        "Arguments",
        "Options",
        "Input and output",
        "Model and engine",
        "Prompt",
        "Batch job",
        "Caption sampling (default: the model's generation_config.json)",
        "Long videos in timed windows",
        "Frame sampling",
        "OpenAI-compatible server (--backend openai)",
    ]
    probe = CliRunner().invoke(app, ["probe", "--help"], terminal_width=78)
    assert (
        "Model and engine:\n  -m, --model NAME|DIR   Hugging Face model id or local folder, e.g.\n"
        "                         Qwen/Qwen2.5-VL-7B-Instruct.\n  --family NAME "
    ) in probe.output


def _span(tmp_path: Path) -> InputSpan:
    data = tmp_path / "in.jsonl"
    data.write_text('{"video": "a.mp4"}\n')
    return InputSpan(path=data, start=0, stop=1, size=data.stat().st_size, format="jsonl", units=1)


def test_the_fingerprint_holds_the_rows_that_say_so(tmp_path: Path) -> None:
    span = _span(tmp_path)

    def options(config: RunConfig) -> dict[str, typing.Any]:
        return run_fingerprint(config, prompt="p", span=span, digest="d")["options"]

    plain = options(build_config({}, {}))
    nested = ("generation", "sampling")
    assert set(plain) == {
        o.key for o in OPTIONS if o.fingerprint == ALWAYS and OPTION_GROUP[o.key] not in nested
    } | set(nested)
    for group in nested:
        assert set(plain[group]) == {o.key for o in OPTIONS if o.fingerprint and OPTION_GROUP[o.key] == group}
    set_all = {"window": 5.0, "summary_prompt": "s", "fail_on": "truncated", "retries": 1}
    windowed = build_config({}, set_all)
    text = build_config({}, {"no_video": True, "prompt": "{x}"})
    text = dataclasses.replace(text, run=dataclasses.replace(text.run, prompt_first=True))
    extra = (set(options(windowed)) | set(options(text))) - set(plain)
    assert extra == {o.key for o in OPTIONS if o.fingerprint == WHEN_SET}
    # Options that change only how fast records are captioned leave it as it is.
    unmarked = {"batch_size": 3, "decode_workers": 0, "overwrite": True, "max_in_flight": 2, "id_key": "id"}
    assert all(BY_KEY[key].fingerprint is None for key in unmarked)
    assert options(build_config({}, unmarked)) == plain


def test_the_fingerprint_layout_is_unchanged(tmp_path: Path) -> None:
    """Written as vidcap wrote it before the table (b8342ae): summaries on disk keep this layout,
    key order included, and an output written then must still resume."""
    config = build_config(
        {},
        {
            "model": "m",
            "max_model_len": 4096,
            "system_prompt": "s",
            "output_key": "cap",
            "temperature": 0.5,
            "seed": 3,
            "nframes": 8,
            "max_pixels": 1000,
            "window": 20.0,
            "summary_prompt": "Sum.",
            "fail_on": "truncated",
            "retries": 2,
            "batch_size": 7,
            "decode_workers": 0,
            "image_factor": 32,
        },
    )
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, prompt_first=True))
    options = run_fingerprint(config, prompt="P", span=_span(tmp_path), digest="d")["options"]
    assert json.dumps(options) == (
        '{"model": "m", "max_model_len": 4096, "prompt": "P", "system_prompt": "s", "input_video_key": '
        '"video", "conversation_key": "conversation", "output_key": "cap", "status_key": "status", '
        '"error_key": "error", "info_key": "info", "generation": {"temperature": 0.5, "top_p": null, '
        '"top_k": null, "min_p": null, "repetition_penalty": null, "presence_penalty": null, '
        '"frequency_penalty": null, "max_tokens": null, "num_captions": 1, "seed": 3, "json_schema": null}, '
        '"sampling": {"fps": null, "nframes": 8, "min_frames": 4, "max_frames": 768, "min_pixels": null, '
        '"max_pixels": 1000, "total_pixels": null, "image_factor": 32, "temporal_patch_size": 2, '
        '"model_seq_len": null}, "window": 20.0, "summary_prompt": "Sum.", "prompt_first": true, '
        '"fail_on": ["truncated"], "retries": 2}'
    )
