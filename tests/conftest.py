"""Fixtures every test module can ask for by name, and the session-wide check that the tests
read nothing beside the repository (tests/outside_reads.py)."""

import sys

import pytest

from tests.outside_reads import RECORDER
from tests.trt_fake import fake_trt  # noqa: F401  (the fake TensorRT of each version, installed: tests/trt_fake.py)

sys.addaudithook(RECORDER)  # for the rest of the process: audit hooks cannot be removed


def pytest_terminal_summary(terminalreporter):
    if RECORDER.seen:
        terminalreporter.section("files opened beside the repository (it must be self-contained)")
        for path in sorted(set(RECORDER.seen)):
            terminalreporter.line(path)


def pytest_sessionfinish(session, exitstatus):
    if RECORDER.seen and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def sam_artifact(tmp_path_factory):
    """One fp32 efficientvit-sam-l0 export (seeded weights, tests/fixtures.export_sam) for the whole
    session: read it, never write into it (copy it first: shutil.copytree)."""
    from tests.fixtures import export_sam

    return export_sam(tmp_path_factory.mktemp("sam-artifact"))
