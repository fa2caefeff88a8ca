"""A SAM export (two graphs) is refused by package and serve in one line, not packaged as its
first graph (serving SAM's encoder and decoder together is issue 24)."""

from __future__ import annotations

from typer.testing import CliRunner

from msla_deploy.cli import app
from tests.fixtures import one_error_line

runner = CliRunner()


def test_package_refuses_a_sam_export(sam_artifact, tmp_path):
    repository = tmp_path / "repo"
    result = runner.invoke(app, ["package", str(sam_artifact), "--triton", str(repository)])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert "package/serve does not take" in line and "(encoder, decoder)" in line
    assert not repository.exists()
