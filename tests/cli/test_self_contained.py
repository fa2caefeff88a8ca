"""The repository is self-contained: a clone with nothing beside it runs the whole suite.

Two checks. Statically, no source file names a path beside the checkout (a sibling data folder,
an environment variable pointing at one, the fact sheets that used to live there), and every
`docs/facts/<page>.md#<section>` a comment points to exists. At run time, conftest.py watches
every file this test process opens (tests/outside_reads.py) and fails the session if one lies
beside the repository; the tests below prove that watch is really on and sees such a read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures import DATA, REPO
from tests.outside_reads import RECORDER, OutsideReads

THIS = Path(__file__).resolve()

# What reading beside the checkout looked like (and would look like again).
OUTSIDE_PATTERNS = {
    "a sibling data folder": re.compile(r"\.\./shared|shared/(fixtures|docs|tools)\b"),
    "a path built from the checkout's parent": re.compile(
        r"""(REPO|REPO_ROOT|ROOT)\.parent\b|parent\s*/\s*["']shared["']"""
    ),
    "an environment variable naming data outside": re.compile(r"MSLA_FIXTURES|MSLA_TRT_API"),
    "a fact sheet that is not in the repository": re.compile(r"\bFACTS\.md|\bFACTS §|UPSTREAM_SPEC|\bDESIGN\.md"),
}
# tests/<file>.py: parents[1] is the checkout; parents[2] and up are beside it
TESTS_PARENTS_BEYOND = re.compile(r"parents\[[2-9]\]")
# tests/<package>/<file>.py: parents[2] is the checkout; parents[3] and up are beside it
PACKAGE_TESTS_PARENTS_BEYOND = re.compile(r"parents\[[3-9]\]")
SCANNED = ("msla_deploy", "tests", "benchmarks", "examples", "scripts")
SUFFIXES = {".py", ".sh", ".yml", ".yaml", ".toml", ".cfg"}


def scanned_files():
    files = [REPO / ".ci" / "run", REPO / "pyproject.toml"]
    for top in SCANNED:
        files += [
            p
            for p in sorted((REPO / top).rglob("*"))
            if p.suffix in SUFFIXES and p.is_file() and "__pycache__" not in p.parts
        ]
    return [p for p in files if p.resolve() != THIS]


def test_no_source_names_a_path_beside_the_checkout():
    found = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            found += [f"{where}  ({what})" for what, pattern in OUTSIDE_PATTERNS.items() if pattern.search(line)]
            if path.parent == REPO / "tests" and TESTS_PARENTS_BEYOND.search(line):
                found.append(f"{where}  (above the checkout)")
            if path.parent.parent == REPO / "tests" and PACKAGE_TESTS_PARENTS_BEYOND.search(line):
                found.append(f"{where}  (above the checkout)")
    assert not found, "\n".join(found)


def test_the_scan_would_see_each_pattern():
    """Each pattern matches what it is there to catch (a typo in one would pass everything)."""
    samples = {
        "a sibling data folder": 'FIXTURES = Path("../shared/fixtures/upstream")',
        "a path built from the checkout's parent": 'FACTS = REPO.parent / "shared" / "docs"',
        "an environment variable naming data outside": 'os.environ.get("MSLA_FIXTURES")',
        "a fact sheet that is not in the repository": "# see FACTS.md section 3",
    }
    assert samples.keys() == OUTSIDE_PATTERNS.keys()
    for what, sample in samples.items():
        assert OUTSIDE_PATTERNS[what].search(sample), what
    assert TESTS_PARENTS_BEYOND.search("Path(__file__).resolve().parents[2]")
    assert PACKAGE_TESTS_PARENTS_BEYOND.search("Path(__file__).resolve().parents[3]")
    assert not PACKAGE_TESTS_PARENTS_BEYOND.search("Path(__file__).resolve().parents[2]")
    assert len(scanned_files()) > 100  # the scan reads the package and the tests, not nothing


# --- links into docs/facts ------------------------------------------------------------------------

FACTS_LINK = re.compile(r"docs/facts/([a-z0-9_-]+\.md)(?:#([a-z0-9-]+))?")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_facts_link_in_the_code_exists():
    facts = REPO / "docs" / "facts"
    seen, broken = 0, []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for page, anchor in FACTS_LINK.findall(line):
                seen += 1
                target = facts / page
                if not target.is_file() or (anchor and anchor not in anchors(target)):
                    broken.append(f"{path.relative_to(REPO)}:{number}: docs/facts/{page}#{anchor}")
    assert not broken, "\n".join(broken)
    assert seen >= 20  # the package's comments do point there


def test_links_between_the_facts_pages_exist():
    pages = sorted((REPO / "docs" / "facts").glob("*.md"))
    assert {p.name for p in pages} >= {"tensorrt.md", "upstream.md", "onnxruntime.md", "triton.md"}
    broken = []
    for page in pages:
        for link in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", link):
                continue
            file, _, anchor = link.partition("#")
            target = (page.parent / file).resolve() if file else page
            if not target.is_file() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
                broken.append(f"{page.name}: {link}")
    assert not broken, "\n".join(broken)


# --- the data lives in tests/data ----------------------------------------------------------------


def test_test_data_is_inside_the_repository_and_documented():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    files = [p for p in DATA.rglob("*") if p.is_file() and p.name != "README.md"]
    assert files and all(REPO in p.resolve().parents for p in files)
    # every top-level entry of tests/data is described in its README
    for entry in sorted(p.name for p in DATA.iterdir() if p.name != "README.md"):
        assert f"{entry}/" in readme, entry


# --- the run-time watch --------------------------------------------------------------------------


def test_the_watch_is_installed_for_this_session():
    with RECORDER.expecting() as caught:
        probe = REPO.parent / "no-such-sibling-of-msla-deploy" / "fixtures.json"
        with pytest.raises(FileNotFoundError), open(probe):  # the open is the point: it fails, the hook saw it
            pass
    assert caught == [str(probe)]


def test_the_watch_tells_outside_from_inside(tmp_path):
    watch = OutsideReads(REPO)
    assert watch.outside(REPO.parent / "shared" / "fixtures" / "upstream" / "litemla" / "index.json")
    assert watch.outside(str(REPO / ".." / "elsewhere.txt"))  # normalised before it is judged
    assert watch.outside(REPO / "tests" / "data" / "upstream" / "litemla" / "index.json") is None
    assert watch.outside(tmp_path / "x.onnx") is None
    assert watch.outside(3) is None  # an open file descriptor: nothing to judge
    with RECORDER.expecting() as caught:
        (tmp_path / "inside.txt").write_text("x")
        (DATA / "README.md").read_text()
    assert caught == []


def test_the_watch_holds_for_a_clone_in_a_temporary_folder(tmp_path):
    """CI clones into a fresh temporary folder: the temp folder excuses nothing beside the clone."""
    clone = tmp_path / "msla-deploy"
    watch = OutsideReads(clone)
    assert watch.outside(tmp_path / "shared" / "fixtures" / "upstream" / "litemla" / "index.json")
    assert watch.outside(clone / "tests" / "data" / "README.md") is None
