"""Every console example in README.md and docs/*.md runs, and prints what the page shows.

Each page is one test. Its ```console blocks are read in order: a line starting with `$ ` is a
command (a line ending in `\\` continues it), the lines up to the next command are its output.
The commands of a page run one after another in one bash process (so `export` and variables
carry over), under a pseudo-terminal 80 columns wide, as a person would see them: tables on the
terminal, machine formats where the command line pipes. Every page starts from a fresh working
directory holding copies of `sample_logs/`, `benchmarks/` and `docs/examples/` (the files the
examples use), an empty home directory (so the default store is new) and no `AUDIT_*` variable
but `AUDIT_WRITER_ID=web-1` and `AUDIT_PAGER=cat`; the login name is `ops`.

Outputs are compared after normalising what differs from run to run: ids, hashes, tokens,
times and dates, sizes and timings, the temporary paths, runs of spaces and of rule characters.
A line holding only `…` stands for any number of lines.

`python -m pytest tests/test_docs.py --update-docs` rewrites, in the pages, the output of every
example that no longer matches, from the real run (outputs that still match are left as
written, so elisions and the ids shown stay put). Examples that cannot run here (a crontab, a
sync to object storage) belong in other fences (```cron, ```sh, ```text).
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: What a page's working directory holds: the files its examples use.
FIXTURES = (
    "sample_logs",
    "benchmarks",
    "docs/examples",
    "docs/verify_store.py",
    "docs/verify_bundle.py",
)
WIDTH = 80
TIMEOUT = 120  # seconds for one page, all its commands
_MARK = "\x1e@@docs-test@@"
_ELLIPSIS = "…"
_HEREDOC = re.compile(r"<<-?\s*'?\"?(\w+)'?\"?\s*$")


@dataclass
class Example:
    """One command of a console block and the output lines the page shows for it."""

    command: str
    start: int  # index of the first output line in the page's lines
    end: int  # index after the last output line (trailing blank lines excluded)
    expected: list[str] = field(default_factory=list)


def parse(text: str) -> list[Example]:
    """The examples of a page's ```console blocks, in order."""
    lines = text.split("\n")
    examples: list[Example] = []
    at = 0
    while at < len(lines):
        if lines[at].strip() != "```console":
            at += 1
            continue
        at += 1
        current: Example | None = None
        while at < len(lines) and lines[at].strip() != "```":
            line = lines[at]
            if line.startswith("$ "):
                command = line[2:]
                while command.endswith("\\") and at + 1 < len(lines):
                    at += 1
                    command += "\n" + lines[at]
                heredoc = _HEREDOC.search(command)
                while heredoc and at + 1 < len(lines):  # the here-document is the command's
                    at += 1
                    command += "\n" + lines[at]
                    if lines[at] == heredoc.group(1):
                        break
                current = Example(command, at + 1, at + 1)
                examples.append(current)
            elif current is None:
                raise AssertionError(f"output before any command in a console block: {line!r}")
            else:
                current.expected.append(line)
                if line.strip():
                    current.end = at + 1
            at += 1
        for example in examples:
            while example.expected and not example.expected[-1].strip():
                example.expected.pop()
        at += 1
    return examples


# ------------------------------------------------------------------------------ normalising
_RULES = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<id>"),
    (re.compile(r"(sha256:)?[0-9a-f]{64}"), "<hash>"),
    (re.compile(r"audit_[A-Za-z0-9_-]{20,}"), "<token>"),
    (re.compile(r"sa-[0-9a-f]{16}"), "<account>"),
    (re.compile(r"\b\d{9}-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z\.json"), "<manifest>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{3})?)?Z?)?"), "<time>"),
    (re.compile(r"\b[0-9a-f]{12}…"), "<key>…"),  # a key id as a table shows it (`verify`'s hosts)
    (re.compile(r"\b[0-9a-f]{8}(?:-[0-9a-f]{4}){0,3}\b"), "<id>"),  # short ids
    (re.compile(r"\b\d{13}\b"), "<epoch-ms>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:B|kB|KB|MB|GB|KiB|MiB|GiB|bytes)\b"), "<size>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms)\b"), "<duration>"),
    (re.compile(r"\(\d+%\)"), "(<n>%)"),
    (re.compile(r"^(<\d+>1 \S+ )\S+( audit )"), r"\1<host>\2"),  # syslog HOSTNAME
    (re.compile(r"([─━═│┃])\1+"), r"\1"),
    (re.compile(r"[ \t]+"), " "),
]


def normalise(lines: list[str], paths: dict[str, str]) -> list[str]:
    """What is compared of an output: the lines with run-to-run details replaced."""
    result = []
    for line in lines:
        line = shown_paths(line, paths)
        for pattern, replacement in _RULES:
            line = pattern.sub(replacement, line)
        result.append(line.strip())
    while result and not result[-1]:
        result.pop()
    return result


def shown_paths(line: str, paths: dict[str, str]) -> str:
    """`line` with the temporary directories as a reader has them: `~/x`, and `x` for a file of
    the working directory (`.` alone for the directory itself)."""
    for real, seen in paths.items():
        line = line.replace(real + "/", "" if seen == "." else seen + "/")
        line = line.replace(real, seen)
    return line


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` is `expected`, where a line `…` stands for any number of lines."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line == _ELLIPSIS else re.escape(line) + r"\n" for line in expected
    )
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


# ------------------------------------------------------------------------------ running
def workspace(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A fresh working directory with the examples' files, and the environment to run in."""
    work = tmp / "work"
    home = tmp / "home"
    home.mkdir()
    for name in FIXTURES:
        if (ROOT / name).is_file():  # the stand-alone verifiers the pages run
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
        else:
            shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AUDIT_", "XDG_", "PYTEST", "COV_")) and key not in ("TZ",)
    }
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        TERM="dumb",  # a terminal, without colours or cursor moves
        NO_COLOR="1",
        COLUMNS=str(WIDTH),
        LINES="50",
        LC_ALL=_utf8_locale(),  # byte order for `ls` and `sort`, UTF-8 text
        TZ="UTC",
        AUDIT_WRITER_ID="web-1",
        USER="ops",  # the login name service-account commands record as the actor
        LOGNAME="ops",
        AUDIT_PAGER="cat",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUTF8="1",
        PS1="",
    )
    return work, env


def _utf8_locale() -> str:
    """C.UTF-8 where the system has it (almost everywhere), else C."""
    import locale

    try:
        previous = locale.setlocale(locale.LC_ALL)
        locale.setlocale(locale.LC_ALL, "C.UTF-8")
        locale.setlocale(locale.LC_ALL, previous)
    except locale.Error:
        return "C"
    return "C.UTF-8"


def run_commands(commands: list[str], work: Path, env: dict[str, str]) -> list[list[str]]:
    """Run the commands in one bash under a pseudo-terminal; each one's output lines."""
    # After each command: its marker, then its exit status again, for a following `echo $?`.
    script = "".join(
        f"{command}\n__rc=$?; printf '\\n{_MARK}{n}\\n'; (exit $__rc)\n"
        for n, command in enumerate(commands)
    )
    (work.parent / "page.sh").write_text(script)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, WIDTH, 0, 0))
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", str(work.parent / "page.sh")],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"the page's commands took longer than {TIMEOUT} s")
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer of the terminal has exited
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait()
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    outputs: list[list[str]] = []
    for n in range(len(commands)):
        mark = f"\n{_MARK}{n}\n"
        before, found, text = text.partition(mark)
        assert found, f"the page stopped before its command {n + 1}: {commands[n]!r}"
        outputs.append(before.split("\n") if before else [])
    return outputs


def _update(
    page: Path, examples: list[Example], outputs: list[list[str]], paths: dict[str, str]
) -> None:
    """Write each example's real output into the page, from the last one up, with the
    temporary directories shown as a reader has them (`~`, `.`)."""
    lines = page.read_text().split("\n")
    for example, output in sorted(
        zip(examples, outputs, strict=True), key=lambda pair: pair[0].start, reverse=True
    ):
        shown = [shown_paths(line, paths).rstrip() for line in output]
        while shown and not shown[-1]:
            shown.pop()
        lines[example.start : example.end] = shown
    page.write_text("\n".join(lines))


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_console_examples(page: Path, request: pytest.FixtureRequest) -> None:
    examples = parse(page.read_text())
    if not examples:
        pytest.skip("no console example")
    # A short directory: absolute paths in 80-column tables then fit on one line.
    short = Path(tempfile.mkdtemp(prefix="ad", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    work, env = workspace(short)
    outputs = run_commands([example.command for example in examples], work, env)
    paths = {env["HOME"]: "~", str(work): "."}
    wrong = []
    for example, output in zip(examples, outputs, strict=True):
        expected = normalise(example.expected, paths)
        actual = normalise(output, paths)
        if not matches(expected, actual):
            wrong.append((example, output))
            diff = "\n".join(difflib.unified_diff(expected, actual, "page", "run", lineterm=""))
            print(f"{page.name}:{example.start}: $ {example.command}\n{diff}\n")
    if wrong and request.config.getoption("--update-docs"):
        _update(page, [e for e, _ in wrong], [output for _, output in wrong], paths)
        pytest.skip(f"rewrote {len(wrong)} example output(s) in {page.name}")
    assert not wrong, f"{len(wrong)} example(s) in {page.name} print something else (diffs above)"


def test_normalise_keeps_what_matters() -> None:
    """The normalisation hides run-to-run details only: a different count, action or word is
    still a difference."""
    paths = {"/tmp/x/work": "."}
    run = [
        "01a214a2-000d-7174-ab4b-9f3cbfc2b0f4  2026-11-25 21:34:51  login  3 entries  /tmp/x/work/a"
    ]
    same = ["01a1ac4e-ae95-7097-b40b-96237bfe63ef  2026-11-05 15:23:20  login  3 entries  a"]
    assert normalise(run, paths) == normalise(same, paths)
    for old, new in (("3 entries", "4 entries"), ("login", "logout"), ("  a", "  b")):
        assert normalise(run, paths) != normalise([same[0].replace(old, new)], paths)
    assert matches(["a", _ELLIPSIS, "z"], ["a", "b", "c", "z"])
    assert matches(["a", _ELLIPSIS, "z"], ["a", "z"])
    assert not matches(["a", _ELLIPSIS, "z"], ["a", "b"])


def test_example_scripts_are_shown_as_run() -> None:
    """A Python script under docs/examples/ that a page runs is shown in that page verbatim, as
    a ```python block, so the code a reader sees is the code that ran."""
    blocks = []
    for page in PAGES:
        blocks += re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
    for script in sorted((ROOT / "docs" / "examples").glob("*.py")):
        assert script.read_text() in blocks, f"{script.name} is not shown verbatim in the docs"
