"""The README runs as written: every Python block and every `fairgen` shell line, at small sizes.

Sizes are shrunk by the substitutions below (the only edits made to the README's text); lines that
set up the machine (`make`, `pip`, `source`) or run for minutes by design (`fairgen demo`,
benchmarks,
`torchrun`) are listed as not run, and the test fails if a line is neither run nor listed.
"""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

# (pattern, replacement): the README's sizes -> test sizes. Applied to every block before it runs.
SMALL = [
    (r"n=20_000", "n=600"),
    (r"--n 20000\b", "--n 600"),
    (r"--steps \d+", "--steps 2"),
    (r"--n 64\b", "--n 8"),
]
# Flags appended to a command's line (a later flag wins): sizes the README leaves at their defaults.
EXTRA = {
    "steer": ["--n", "600", "--eval-n", "200"],
    "train": ["--batch-size", "8"],
    "audit": ["--n-probe", "200", "--n-test", "200", "--permutations", "9", "--bootstrap", "20"],
}

# Lines a reader runs but this test does not: machine set-up, and commands that take minutes.
NOT_RUN = ("make ", "pip ", "source ", "fairgen demo", "python benchmarks/", "torchrun ", "cd ")


def blocks(kind: str) -> list[str]:
    """Fenced code blocks of ``kind`` (python / bash) in the README, in order."""
    text = README.read_text()
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def shrink(code: str) -> str:
    for pattern, replacement in SMALL:
        code = re.sub(pattern, replacement, code)
    return code


def shell_lines(block: str) -> list[str]:
    """Commands of a bash block: continuations joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        line = line.split("  #")[0].split(" # ")[0].strip()
        if line and not line.startswith("#"):
            lines.extend(part.strip() for part in line.split("&&"))
    return lines


def test_readme_has_code_to_run():
    assert blocks("python") and blocks("bash")


def test_every_shell_line_is_run_or_listed():
    for block in blocks("bash"):
        for line in shell_lines(block):
            ok = line.startswith(("fairgen ", "PYTHONPATH=", *NOT_RUN))
            assert ok, f"README line neither run nor listed: {line}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def test_python_blocks_run_as_written(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    for block in blocks("python"):
        exec(compile(shrink(block), str(README), "exec"), namespace)


def test_shell_lines_run_as_written(workdir, monkeypatch):
    from fairgen.cli import main

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    root = README.parent
    for block in blocks("bash"):
        for line in shell_lines(shrink(block)):
            words = shlex.split(line)
            while words and "=" in words[0] and not words[0].startswith("-"):
                name, value = words.pop(0).split("=", 1)  # VAR=value before the command
                assert name == "PYTHONPATH", f"README line sets {name}; teach this test to run it"
                monkeypatch.syspath_prepend(str(root / value))
            if not words or words[0] != "fairgen" or line.startswith(NOT_RUN):
                continue
            argv = words[1:] + EXTRA.get(words[1], [])
            assert main(argv) in (0, None), f"README line failed: {line}"
