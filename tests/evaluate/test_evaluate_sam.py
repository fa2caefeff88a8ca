"""`msla-deploy evaluate` of a SAM artifact: not supported yet (issue 24), said on one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from msla_deploy.cli import app
from msla_deploy.errors import BadInput
from msla_deploy.evaluate.protocols import protocol_for
from tests.fixtures import one_error_line


def test_sam_has_no_protocol_yet():
    with pytest.raises(BadInput, match=r"evaluate does not support SAM artifacts yet \(issue 24\)"):
        protocol_for("sam")


@pytest.mark.slow
def test_a_sam_artifact_is_refused_before_anything_runs(sam_artifact, tmp_path):
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(app, ["evaluate", str(sam_artifact), "--data", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output
    assert "evaluate does not support SAM artifacts yet (issue 24)" in one_error_line(result)
    assert not (sam_artifact / "evaluation").exists()
