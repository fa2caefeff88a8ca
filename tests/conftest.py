"""Fixtures every test module can ask for by name, and the session-wide check that the tests
read nothing beside the repository (tests/outside_reads.py)."""

import sys

import pytest

from tests.outside_reads import RECORDER
from tests.trt_fake import fake_trt  # noqa: F401  (the fake TensorRT of each version, installed: tests/trt_fake.py)

sys.addaudithook(RECORDER)  # for the rest of the process: audit hooks cannot be removed


#: a pytest-xdist run: what each worker's hook saw, gathered by the controller (pytest_testnodedown)
WORKERS_SEEN = []


def pytest_terminal_summary(terminalreporter):
    seen = sorted(set(RECORDER.seen) | set(WORKERS_SEEN))
    if seen:
        terminalreporter.section("files opened beside the repository (it must be self-contained)")
        for path in seen:
            terminalreporter.line(path)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # pytest-xdist's controller, as each worker ends
    WORKERS_SEEN.extend(getattr(node, "workeroutput", {}).get("outside_reads", []))


def pytest_sessionfinish(session, exitstatus):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand what it saw to the controller
        workeroutput["outside_reads"] = list(RECORDER.seen)
    seen = RECORDER.seen or WORKERS_SEEN
    if seen and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def sam_artifact(tmp_path_factory):
    """One fp32 efficientvit-sam-l0 export (seeded weights, tests/fixtures.export_sam) for the whole
    session: read it, never write into it (copy it first: shutil.copytree)."""
    from tests.fixtures import export_sam

    return export_sam(tmp_path_factory.mktemp("sam-artifact"))
