"""Every code block in README.md and docs/ runs as written.

- Every `msla-deploy ...` line of a bash or text block (synopses included, and the run steps of
  examples/ci/github-actions.yml) names a real command and only options of that command, read from
  the Typer app itself (typer.main.get_command), so a renamed or dropped option breaks a test here
  before it breaks a reader.
- A page's runnable blocks run in order, in a fresh working directory, as a reader would type
  them: bash lines (`msla-deploy ...`, `python examples/....py ...`) as commands, python blocks as
  scripts, toml blocks appended to that directory's pyproject.toml (where the budgets are read).
  A page that exports runs in the slow set; the cheap commands (`--help`, `models`, `doctor`) also
  run on their own in the quick loop.
- A block that cannot run as written (a GPU, a Jetson, Docker, a real dataset) carries
  `<!-- not-run: why -->` just before it. Only those are left out, and they are counted: more than
  NOT_RUN_CAP of them fails, so marking a block not-run is a decision someone makes on purpose.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import typer.main

from msla_deploy.cli import app
from tests.fixtures import REPO

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
CI_EXAMPLE = REPO / "examples" / "ci" / "github-actions.yml"

#: the most blocks the pages may leave unrun (hardware, Docker, datasets, installs, the suite itself)
NOT_RUN_CAP = 16
SHELL = {"bash", "sh", "shell", "console"}
KNOWN_LANGUAGES = SHELL | {"python", "text", "toml"}
#: commands that need no artifact and run in seconds: the quick loop runs them for real
CHEAP = {"models", "doctor"}

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(.*?)-->\s*$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
SEPARATORS = {"&&", "||", ";", "|", "&"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: Optional[str]  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def read_blocks(page: Path) -> List[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        assert end is not None, f"{page.relative_to(REPO)}:{i + 1}: unclosed code block"
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before)
        blocks.append(
            Block(page, i + 1, lang.lower(), "\n".join(body) + "\n", marker.group(1).strip() if marker else None)
        )
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in read_blocks(page)]
CLICK = typer.main.get_command(app)
GLOBAL_OPTIONS = {opt for param in CLICK.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}


def command_options(name: str) -> set:
    options = [param for param in CLICK.commands[name].params if param.param_type_name == "option"]  # not the arguments
    return {opt for param in options for opt in (*param.opts, *param.secondary_opts)} | {"--help"}


# ---------------------------------------------------------------------------------------------
# reading commands out of blocks


def shell_lines(text: str) -> List[str]:
    """Logical lines of a shell block: backslash continuations joined, console prompts dropped."""
    joined: List[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw[2:] if raw.startswith("$ ") else raw
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    return [line for line in joined if line.strip() and not line.lstrip().startswith("#")]


def shell_segments(line: str) -> List[List[str]]:
    """The simple commands of one shell line (split at && || ; | &), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: List[List[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def synopsis_lines(text: str) -> List[str]:
    """`msla-deploy ...` synopses of a text block, with their `[--option ...]` continuation lines."""
    found: List[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("msla-deploy"):
            found.append(stripped)
        elif found and stripped.startswith(("[", "--")) and line[:1].isspace():
            found[-1] += " " + stripped
    return found


def msla_problems(command: str, tokens: List[str]) -> List[str]:
    """What is wrong with one `msla-deploy ...` command (tokens after the program name)."""
    rest = list(tokens)
    while rest and rest[0].startswith("-"):  # global options before the command
        option = rest.pop(0).split("=", 1)[0]
        if option not in GLOBAL_OPTIONS:
            return [f"{command!r}: {option} is not an option of msla-deploy itself"]
        if option == "--trust-model-file" and rest:
            rest.pop(0)
    if not rest:
        return [] if tokens else [f"{command!r}: no command"]
    name = rest[0]
    if name not in CLICK.commands:
        return [f"{command!r}: no command {name!r} (msla-deploy has {', '.join(sorted(CLICK.commands))})"]
    known = command_options(name)
    problems = []
    for token in rest[1:]:
        match = OPTION.fullmatch(token.split("=", 1)[0]) if token.startswith("-") else None
        if match and re.fullmatch(r"-\d.*", token) is None and match.group(1) not in known:
            problems.append(
                f"{command!r}: {match.group(1)} is not an option of `msla-deploy {name}` ({', '.join(sorted(known))})"
            )
    return problems


def synopsis_problems(synopsis: str) -> List[str]:
    """A synopsis is not shell: take the command word, then every --option anywhere in it."""
    words = synopsis.split()[1:]
    head = []
    for word in words:
        head.append(word)
        if not word.startswith("-") and (len(head) < 2 or head[-2] != "--trust-model-file"):
            break
    problems = msla_problems(synopsis, head)
    if problems or not head or head[-1].startswith("-"):
        return problems
    options = [m.group(1) for m in re.finditer(r"(?<![\w-])(--[A-Za-z][\w-]*)", " ".join(words[len(head) :]))]
    return msla_problems(synopsis, head + options)


def msla_commands(block: Block) -> List[Tuple[str, List[str]]]:
    """(the line as written, tokens after `msla-deploy`) for every msla-deploy command of a block."""
    if block.lang == "text":
        return [(line, line.split()[1:]) for line in synopsis_lines(block.text)]
    if block.lang not in SHELL:
        return []
    return [
        (line, segment[1:])
        for line in shell_lines(block.text)
        for segment in shell_segments(line)
        if segment[0] == "msla-deploy"
    ]


def ci_example_commands() -> List[str]:
    """The `run:` steps of the GitHub Actions example (folded `>` and literal `|` blocks included)."""
    lines = CI_EXAMPLE.read_text(encoding="utf-8").splitlines()
    commands: List[str] = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?run:\s*(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value not in (">", "|", ">-", "|-"):
            commands.append(value)
            continue
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        commands.extend(
            [" ".join(part for part in body if part)] if value.startswith(">") else [part for part in body if part]
        )
    return [command for command in commands if command.startswith("msla-deploy")]


# ---------------------------------------------------------------------------------------------
# running a page


@dataclass(frozen=True)
class Step:
    block: Block
    kind: str  # "cli" | "script" | "python" | "toml"
    payload: object  # argv after the program, or the block's text

    @property
    def cheap(self) -> bool:
        if self.kind != "cli":
            return False
        args = list(self.payload)
        return "--help" in args or (bool(args) and args[0] in CHEAP and len(args) == 1)


def runnable_steps(block: Block) -> Tuple[List[Step], List[str]]:
    """The steps a reader would run for one block, and what makes a line unrunnable as written."""
    if block.not_run is not None:
        return [], []
    if block.lang == "python":
        return [Step(block, "python", block.text)], []
    if block.lang == "toml":
        return [Step(block, "toml", block.text)], []
    if block.lang not in SHELL:
        return [], []
    steps, problems = [], []
    for line in shell_lines(block.text):
        segments = shell_segments(line)
        tokens = segments[0] if len(segments) == 1 else []
        if tokens and tokens[0] == "msla-deploy" and not any(t in "<>()" for t in tokens):
            steps.append(Step(block, "cli", tokens[1:]))
        elif len(tokens) >= 2 and tokens[0] == "python" and tokens[1].endswith(".py"):
            steps.append(Step(block, "script", tokens[1:]))
        else:
            problems.append(
                f"{block.id}: {line.strip()!r} cannot run as written (only `msla-deploy ...` and `python FILE.py ...` "
                "lines run): write it so, or mark the block <!-- not-run: why -->"
            )
    return steps, problems


def page_steps(page: Path) -> List[Step]:
    return [step for block in BLOCKS if block.page == page for step in runnable_steps(block)[0]]


def environment() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSLA_DEPLOY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.setdefault("COLUMNS", "120")
    return env


def workdir(tmp_path: Path) -> Path:
    """A reader's working directory: empty but for the checkout's examples/, as at its root."""
    (tmp_path / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    return tmp_path


def run_step(step: Step, cwd: Path) -> None:
    if step.kind == "toml":
        with open(cwd / "pyproject.toml", "a", encoding="utf-8") as f:
            f.write(step.payload)
        return
    argv = {
        "cli": [sys.executable, "-m", "msla_deploy", *step.payload],
        "script": [sys.executable, *step.payload],
        "python": [sys.executable, "-c", step.payload],
    }[step.kind]
    done = subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=900)
    shown = " ".join(step.payload) if step.kind != "python" else "the python block"
    assert done.returncode == 0, (
        f"{step.block.id}: {shown} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


# ---------------------------------------------------------------------------------------------
# the tests


def test_blocks_are_found_labelled_and_not_run_only_on_purpose():
    assert len(PAGES) >= 10 and len(BLOCKS) >= 40, (len(PAGES), len(BLOCKS))
    unlabelled = [f"{b.id}: {b.lang or '(no language)'}" for b in BLOCKS if b.lang not in KNOWN_LANGUAGES]
    assert not unlabelled, f"label each block with one of {sorted(KNOWN_LANGUAGES)}: {unlabelled}"
    not_run = [b for b in BLOCKS if b.not_run is not None]
    assert all(b.not_run for b in not_run), [b.id for b in not_run if not b.not_run]  # a reason, always
    markers = sum(
        len(NOT_RUN.findall(line)) for page in PAGES for line in page.read_text(encoding="utf-8").splitlines()
    )
    assert markers == len(not_run), "a <!-- not-run: --> marker must be the line just before a code block"
    assert len(not_run) <= NOT_RUN_CAP, f"{len(not_run)} blocks are not run: {[b.id for b in not_run]}"
    print(
        f"{len(BLOCKS)} blocks in {len(PAGES)} pages; {len(not_run)} not run: "
        + "; ".join(f"{b.id} ({b.not_run})" for b in not_run)
    )


CI_TEST_COMMAND = "python -m pytest -q -n 2 --dist loadfile"


def test_the_readme_keeps_the_test_command_ci_runs():
    assert f"\n{CI_TEST_COMMAND}\n" in (REPO / "README.md").read_text(encoding="utf-8")
    assert f"\n{CI_TEST_COMMAND}\n" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_option_checker_catches_what_it_should():
    """The checks below would pass vacuously if the checker accepted anything."""
    assert msla_problems("x", ["export", "--res", "64x64", "-m", "b0", "--no-fp16-guards"]) == []
    assert msla_problems("x", ["--trust-model-file", "f.py:g", "validate", "a", "--localize"]) == []
    assert msla_problems("x", ["exprot"]) and msla_problems("x", ["build", "a", "--batch", "2"])
    assert msla_problems("x", ["--verbose", "models"])
    assert synopsis_problems("msla-deploy bench A [--transfers/--no-transfers] [--cuda-graph]") == []
    assert synopsis_problems("msla-deploy build A [--opt-batch N (a --batch dynamic export's)]")


CLI_BLOCKS = [b for b in BLOCKS if msla_commands(b)]


@pytest.mark.parametrize("block", CLI_BLOCKS, ids=[b.id for b in CLI_BLOCKS])
def test_command_lines_use_real_commands_and_options(block):
    problems = []
    for line, tokens in msla_commands(block):
        problems += synopsis_problems(line) if block.lang == "text" else msla_problems(line, tokens)
    assert not problems, "\n".join(problems)


def test_ci_example_commands_use_real_options():
    commands = ci_example_commands()
    assert any(c.startswith("msla-deploy export") for c in commands) and any(
        c.startswith("msla-deploy validate") for c in commands
    )
    problems = [p for c in commands for p in msla_problems(c, shlex.split(c)[1:])]
    assert not problems, "\n".join(problems)


def test_unmarked_shell_blocks_run_as_written():
    problems = [p for block in BLOCKS for p in runnable_steps(block)[1]]
    assert not problems, "\n".join(problems)


TOML_BLOCKS = [b for b in BLOCKS if b.lang == "toml"]


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=[b.id for b in TOML_BLOCKS])
def test_toml_blocks_parse(block):
    assert tomllib.loads(block.text)


CHEAP_STEPS = [step for page in PAGES for step in page_steps(page) if step.cheap]


@pytest.mark.parametrize("step", CHEAP_STEPS, ids=[f"{s.block.id}:{' '.join(s.payload)}" for s in CHEAP_STEPS])
def test_cheap_commands_run(step, tmp_path):
    run_step(step, workdir(tmp_path))


def _page_param(page: Path):
    steps = page_steps(page)
    marks = [pytest.mark.slow] if any(not s.cheap for s in steps) else []
    return pytest.param(page, marks=marks, id=str(page.relative_to(REPO)))


RUN_PAGES = [page for page in PAGES if any(not s.cheap for s in page_steps(page))]


@pytest.mark.parametrize("page", [_page_param(p) for p in RUN_PAGES])
def test_page_runs_as_written(page, tmp_path):
    """Each page's blocks in order, in one fresh directory: what a reader following it gets."""
    cwd = workdir(tmp_path)
    for step in page_steps(page):
        run_step(step, cwd)
