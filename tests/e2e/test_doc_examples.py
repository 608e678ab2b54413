"""Every `streamvid-generate` / `streamvid-eval` example in `--help`, README.md and docs/*.md runs as written.

Examples are the lines of ```bash blocks (continuation lines joined) and the lines under "examples" in `--help`
that start a console script, `torchrun` of one, or `make generate` / `make eval`. The fast test checks that every
example's options and config keys exist (an unknown key such as `sampler.cache.window_size` fails it in
seconds); the slow test runs each source's examples in order (later ones use earlier outputs, such as `--compare`
of the two runs made just above) from a scratch copy of the repository root: symbolic links to everything but
`outputs/`, so outputs land in a fresh folder and every documented relative path means what it says. `make X`
runs as `make -o .venv/.streamvid-installed X`: the recipe as written, without the install step.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
RUNNABLE = re.compile(r"^(?:\S*/)?(?:streamvid-generate|streamvid-eval)\s|^(?:\S*/)?torchrun\s.*streamvid-|"
                      r"^make (?:generate|eval)\b")
MARKDOWN = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
HELP = ["streamvid-generate", "streamvid-eval"]


def markdown_examples(path: Path) -> list[str]:
    """Runnable commands of the ```bash blocks of a Markdown file, continuation lines joined, in file order."""
    commands, block, pending = [], False, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            block, pending = line.strip() in ("```bash", "```sh", "```console") and not block, ""
            continue
        if not block:
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if RUNNABLE.match(pending):
            commands.append(pending)
        pending = ""
    return commands


def help_examples(prog: str) -> list[str]:
    """The commands listed under "examples" in `prog --help` (the real console script)."""
    text = subprocess.run([str(BIN / prog), "--help"], capture_output=True, text=True, check=True, env=ENV).stdout
    lines = text.split("\nexamples", 1)[1].splitlines()[1:]
    return [line.strip() for line in lines if line.startswith("  ") and RUNNABLE.match(line.strip())]


def examples(source: str) -> list[str]:
    return help_examples(source) if source in HELP else markdown_examples(REPO / source)


def _script_argv(command: str) -> tuple[str, list[str]] | None:
    """(console script, its arguments) of an example; None for `make` lines."""
    words = shlex.split(command, comments=True)
    for k, word in enumerate(words):
        name = Path(word).name
        if name in HELP:
            return name, words[k + 1:]
    return None


def test_every_source_has_examples_and_their_options_and_keys_exist(monkeypatch):
    from streamvid.core.cli import generate
    from streamvid.eval import cli as eval_cli

    found = {source: examples(source) for source in [*MARKDOWN, *HELP]}
    assert all(found[s] for s in ("README.md", "docs/evaluation.md", *HELP)), found
    checked = 0
    for source, commands in found.items():
        for command in commands:
            parsed = _script_argv(command)
            if parsed is None:
                continue
            name, argv = parsed
            module = generate if name == "streamvid-generate" else eval_cli
            args = module.parse_args(argv)  # unknown options exit here
            if args.config is None or args.config.startswith("outputs/"):  # made by an earlier example
                continue
            monkeypatch.chdir(REPO)
            try:
                if module is generate:
                    generate.resolve_config(args)
                else:
                    eval_cli._load(args)
            except Exception as err:  # name the example in the failure
                pytest.fail(f"{source}: {command}\n  -> {type(err).__name__}: {err}")
            checked += 1
    assert checked >= 8


def test_option_help_examples_are_valid_overrides(monkeypatch):
    """`e.g. KEY=VALUE` in an option's help (such as --set's) is a key of that script's config."""
    from streamvid.core.cli.generate import GenerateConfig
    from streamvid.core.config import load_config
    from streamvid.eval.runner_config import EvalConfig

    monkeypatch.chdir(REPO)
    configs = {"streamvid-generate": ("configs/generate/tiny_random.yaml", GenerateConfig),
               "streamvid-eval": ("configs/eval/tiny_random_smoke.yaml", EvalConfig)}
    for prog, (config, schema) in configs.items():
        text = subprocess.run([str(BIN / prog), "--help"], capture_output=True, text=True, check=True, env=ENV).stdout
        overrides = re.findall(r"e\.g\.\s+([A-Za-z_][\w.]*=[^\s)]+)", text)
        assert overrides, f"{prog} --help gives no KEY=VALUE example"
        for item in overrides:
            load_config(config, [item], schema=schema)


def _scratch_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name != "outputs":
            (root / entry.name).symlink_to(entry)
    return root


def _outputs(command: str) -> list[str]:
    """Paths an example says it writes: `--out X`, `--out-dir X`, `output_dir=X`, `OUT=X`."""
    words = shlex.split(command, comments=True)
    paths = [words[k + 1] for k, w in enumerate(words[:-1]) if w in ("--out", "--out-dir")]
    return paths + [w.split("=", 1)[1] for w in words if w.startswith(("output_dir=", "OUT="))]


@pytest.mark.slow
@pytest.mark.parametrize("source", [s for s in [*MARKDOWN, *HELP] if s in HELP or markdown_examples(REPO / s)])
def test_examples_run_as_written(tmp_path, source):
    root = _scratch_root(tmp_path)
    for command in examples(source):
        run = re.sub(r"^make ", "make -o .venv/.streamvid-installed ", command)
        proc = subprocess.run(["bash", "-c", run], cwd=root, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{source}: {command}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr[-3000:]
        for path in _outputs(command):
            assert (root / path).exists(), f"{source}: {command} did not write {path}"
        if "--compare" in command:
            assert "mean_diff = B - A" in proc.stdout
