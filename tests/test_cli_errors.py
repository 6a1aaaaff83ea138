"""Bad command-line input: one line on stderr, a non-zero exit, no traceback, nothing written.

These run the real ``vidcap`` executable as a user would. None of them reach the engine:
every check happens before the model is loaded.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_vidcap as vidcap
from tests.conftest import write_jsonl


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "Error" in line or "error" in line]
    assert error_lines, result.stderr
    message = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in message, (needle, result.stderr)


@pytest.fixture()
def dataset(tmp_path: Path, clip_dir: Path) -> Path:
    return write_jsonl(tmp_path / "data.jsonl", [{"id": "1", "video": str(clip_dir / "a.mp4")}])


def test_version_and_module_entry_point() -> None:
    result = vidcap("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("vidcap ")


def test_missing_input_file(tmp_path: Path, tiny_model: Path) -> None:
    result = vidcap("run", "--input", str(tmp_path / "nope.jsonl"), "--model", str(tiny_model))
    assert_one_line_error(result, "input file not found", "nope.jsonl")


def test_unknown_flag(dataset: Path) -> None:
    result = vidcap("run", "--input", str(dataset), "--modle", "x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--modle" in result.stderr


def test_unknown_model_folder(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = vidcap("run", "--input", str(dataset), "--output", str(out), "--model", "./no-such-model")
    assert_one_line_error(result, "model folder not found", "no-such-model")
    assert not out.exists()


def test_folder_without_config_is_not_a_model(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    result = vidcap("run", "--input", str(dataset), "--model", str(tmp_path / "empty-model"))
    assert_one_line_error(result, "no config.json")


def test_malformed_json_line_names_file_and_line(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"video": "a.mp4"}\n{"video": "b.mp4",}\n')
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "data.jsonl:2:")


def test_record_without_video_key(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": "a.mp4"}, {"clip": "b.mp4"}])
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "data.jsonl:2:", "no 'video' field")


def test_wrong_video_type(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": 42}])
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "data.jsonl:1:", "path or a list of paths")


def test_record_already_has_output_key(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(tmp_path / "data.jsonl", [{"video": "a.mp4", "caption": "old"}])
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "already has a 'caption' field", "--output-key")
    # The fields written beside the caption are guarded too (never silently replaced).
    for name in ("caption_notes", "caption_raw"):
        data = write_jsonl(tmp_path / "data.jsonl", [{"video": "a.mp4", name: "mine"}])
        result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
        assert_one_line_error(result, f"already has a '{name}' field", "--output-key")


def test_empty_input(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("\n\n")
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "data.jsonl")


def test_unsupported_input_extension(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("video\na.mp4\n")
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model))
    assert_one_line_error(result, "data.txt")


def test_unwritable_output_folder(dataset: Path, tiny_model: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "sub").write_text("a file where a folder is needed")
    result = vidcap(
        "run",
        "--input",
        str(dataset),
        "--model",
        str(tiny_model),
        "--output",
        str(locked / "sub" / "o.jsonl"),
    )
    assert_one_line_error(result, "o.jsonl", f"{locked / 'sub'} is a file, not a folder")
    assert "Not a directory" not in result.stderr


@pytest.mark.parametrize("output", ["o.parquet", "o.jsonl"])
def test_output_folder_that_is_a_file_is_named(
    dataset: Path, tiny_model: Path, tmp_path: Path, output: str
) -> None:
    """The output's own folder is a file: the OS says "File exists"; vidcap says what is wrong."""
    (tmp_path / "sub").write_text("a file where a folder is needed")
    out = tmp_path / "sub" / output
    result = vidcap("run", str(dataset), "--model", str(tiny_model), "--output", str(out))
    assert_one_line_error(result, f"{tmp_path / 'sub'} is a file, not a folder")
    assert "File exists" not in result.stderr


@pytest.mark.parametrize(
    ("args", "needle", "hint"),
    [
        (["run", "--modle", "x"], "no such option: --modle", "run --help"),
        (["run", "data.jsonl", "--fps", "abc"], "invalid value for '--fps'", "run --help"),
        (["run", "data.jsonl", "--backend", "foo"], "invalid value for '--backend'", "run --help"),
        (["frob"], "no such command 'frob'", "vidcap --help"),
        (["merge"], "missing argument", "merge --help"),
        (["report", "x.jsonl", "--sample"], "--sample", ""),
    ],
)
def test_usage_errors_are_one_line_in_vidcaps_format(
    tmp_path: Path, args: list[str], needle: str, hint: str
) -> None:
    """click writes usage errors as four lines (usage, hint, blank, "Error: ..."); vidcap's
    errors are one ``error: ...`` line, the hint kept on it."""
    result = vidcap(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert needle in lines[0], lines
    assert f"{hint}')" in lines[0] if hint else True, lines


def test_help_still_prints_the_help(tmp_path: Path) -> None:
    """`vidcap` alone prints the help (exit 2, as before); `--help` exits 0."""
    alone = vidcap(cwd=tmp_path)
    assert alone.returncode == 2
    assert "Usage:" in alone.stderr + alone.stdout and "Commands" in alone.stderr + alone.stdout
    helped = vidcap("merge", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "Usage:" in helped.stdout


def test_run_help_lists_every_record_format() -> None:
    """-i and -o take every format vidcap reads and writes, and the help says so."""
    from vidcap.cli.options import RECORD_FORMATS
    from vidcap.io.formats import FORMATS

    extensions = [ext for fmt in FORMATS for ext in fmt.extensions]
    assert all(ext in RECORD_FORMATS.replace(",", " ").split() for ext in extensions), RECORD_FORMATS
    text = " ".join(vidcap("run", "--help").stdout.split())
    for flag in ("-i, --input FILE", "-o, --output FILE"):
        described = text.split(flag, 1)[1][:120]
        assert all(ext in described for ext in extensions), (flag, described)


def test_config_file_unknown_key_suggests(dataset: Path, tiny_model: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'model = "{tiny_model}"\nfsp = 1.0\n')
    result = vidcap("run", "--input", str(dataset), "--config", str(config))
    assert_one_line_error(result, "unknown key 'fsp'", "did you mean 'fps'")


def test_fps_and_nframes_are_exclusive(dataset: Path, tiny_model: Path) -> None:
    result = vidcap(
        "run", "--input", str(dataset), "--model", str(tiny_model), "--fps", "1", "--nframes", "8"
    )
    assert_one_line_error(result, "--fps and --nframes are exclusive")


def test_duplicate_ids(tmp_path: Path, tiny_model: Path) -> None:
    data = write_jsonl(
        tmp_path / "d.jsonl", [{"id": "007", "video": "a.mp4"}, {"id": "007", "video": "b.mp4"}]
    )
    result = vidcap("run", "--input", str(data), "--model", str(tiny_model), "--id-key", "id")
    assert_one_line_error(result, "d.jsonl:2:", "duplicate", "'007'")


def test_invalid_json_schema_file(dataset: Path, tiny_model: Path, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "objekt"}')
    result = vidcap("run", "--input", str(dataset), "--model", str(tiny_model), "--json-schema", str(schema))
    assert_one_line_error(result, "s.json", "not a valid JSON Schema")


def test_max_pixels_below_default_min_pixels(dataset: Path, tiny_model: Path) -> None:
    result = vidcap("run", "--input", str(dataset), "--model", str(tiny_model), "--max-pixels", "50176")
    assert_one_line_error(result, "--max-pixels 50176 is below --min-pixels 100352", "default for this model")


def test_flags_replace_alternatives_from_the_config_file() -> None:
    from vidcap.config import build_config

    config = build_config({"fps": 1.0, "prompt": "file"}, {"nframes": 8, "prompt_file": "p.txt"})
    assert (config.sampling.fps, config.sampling.nframes) == (None, 8)
    assert (config.run.prompt, config.run.prompt_file) == (None, "p.txt")
    assert build_config({"fps": 1.0}, {"max_frames": 9}).sampling.fps == 1.0  # others merge as usual
