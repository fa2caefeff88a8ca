"""The typed records of the parity checks and the build: parity.json, validate's report.json, the
build record (manifest "builds" and build.json), and the report writer they share (reporting.py).

Each record round-trips (from_dict(to_dict()) == record) and reads the layout the files had before
records existed (tests/data: a 0.1.0 export's parity.json, a validate report.json of that time)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from msla_deploy.artifact.builds import BuildRecord, BuildsFile, FileEntry, OnnxEntry, TimingCacheEntry
from msla_deploy.artifact.manifest import Manifest
from msla_deploy.artifact.names import MANIFEST_FORMAT
from msla_deploy.errors import BadInput
from msla_deploy.parity.budgets import FP16, FP32
from msla_deploy.parity.metrics import OutputParity, compare_outputs
from msla_deploy.parity.records import OutputRow, ParityCheck, ParityRecord, ValidatedOutput, ValidateReport
from msla_deploy.parity.reports import junit_xml, markdown, write_reports
from msla_deploy.reporting import JUNIT_XML, REPORT_JSON, REPORT_MD, JUnitCase, junit_suite, table, write_report_files
from tests.fixtures import DATA

LEGACY_PARITY = DATA / "legacy-export-0.1.0" / "parity.json"
LEGACY_REPORT = DATA / "legacy-validate-report" / "report.json"


def _contains(whole, part, where="") -> None:
    """Every key and value of `part` is in `whole` (a record may add keys, never drop or change one)."""
    if isinstance(part, dict):
        assert isinstance(whole, dict), where
        for key, value in part.items():
            assert key in whole, f"{where}.{key} lost"
            _contains(whole[key], value, f"{where}.{key}")
    elif isinstance(part, list):
        assert isinstance(whole, list) and len(whole) == len(part), where
        for i, (w, p) in enumerate(zip(whole, part)):
            _contains(w, p, f"{where}[{i}]")
    else:
        assert whole == part, f"{where}: {whole!r} != {part!r}"


# --- parity.json -----------------------------------------------------------------------------------


def test_a_0_1_0_parity_json_reads_and_writes_back_its_keys():
    data = json.loads(LEGACY_PARITY.read_text())
    record = ParityRecord.read(LEGACY_PARITY)
    assert record.passed and record.reference == "pytorch fp32" and record.budget == FP32
    (check,) = record.checks
    assert check.label == "ONNX Runtime fp32" and check.outputs[0].name == "logits" and check.outputs[0].passed
    assert ParityRecord.from_dict(record.to_dict()) == record
    written = record.to_dict()
    assert written["format"] == "msla-deploy/parity/1"
    _contains(written, data)


def _logits(seed: int = 0, shape=(1, 4, 6, 8)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_parity_record_of_checks_round_trips_through_its_file(tmp_path):
    ref = _logits()
    close = ParityCheck.of(
        "ONNX Runtime fp32",
        "model.onnx",
        {"name": "onnxruntime", "version": "1"},
        FP32,
        [compare_outputs("logits", ref, ref + 1e-7, FP32)],
    )
    far = ParityCheck.of(
        "PyTorch fp16 proxy",
        "(policy applied in PyTorch)",
        {"name": "torch"},
        FP16,
        [compare_outputs("logits", ref, -ref, FP16)],
    )
    record = ParityRecord.of([close, far])
    # the primary's, on top
    assert record.runtime == close.runtime and record.budget == FP32 and record.outputs == close.outputs
    assert close.passed and not far.passed and not record.passed
    assert record.failures() and all(f.startswith("PyTorch fp16 proxy: ") for f in record.failures())
    path = record.write(tmp_path / "parity.json")
    assert ParityRecord.read(path) == record
    assert json.loads(path.read_text())["checks"][1]["budget"]["min_cosine"] == FP16.min_cosine


def test_an_unmeasurable_statistic_is_null_in_the_file_and_none_in_the_record(tmp_path):
    """NaN logits leave no finite pair: max abs and cosine are null on disk (as always), the counts say why."""
    ref = _logits()
    broken = ref.copy()
    broken[:] = np.nan
    result = compare_outputs("logits", ref, broken, FP16)
    assert math.isnan(result.max_abs) and math.isnan(result.cosine)
    row = OutputRow.of(result)
    assert row.max_abs is None and row.cosine is None and row.relative_max_abs is None and row.nan_count == broken.size
    assert not row.passed and row.failures == result.failures
    record = ParityRecord.of([ParityCheck("ONNX Runtime fp16", "model.onnx", {}, FP16, False, [row])])
    text = record.write(tmp_path / "parity.json").read_text()

    def reject(constant):
        raise ValueError(constant)

    on_disk = json.loads(text, parse_constant=reject)["outputs"][0]
    assert on_disk["max_abs"] is None and on_disk["cosine"] is None and on_disk["passed"] is False
    assert ParityRecord.read(tmp_path / "parity.json") == record


def test_an_output_row_keeps_every_statistic_of_output_parity():
    """A metric added to OutputParity must reach the reports: the row has a field for each."""
    row_fields = {f.name for f in dataclasses.fields(OutputRow)}
    assert {f.name for f in dataclasses.fields(OutputParity)} <= row_fields
    result = compare_outputs("logits", _logits(), _logits(1), FP32)
    row = OutputRow.of(result)
    for name in {f.name for f in dataclasses.fields(OutputParity)}:
        assert getattr(row, name) == getattr(result, name), name
    assert row.relative_max_abs == result.relative_max_abs and row.passed is result.passed is False
    row.class_iou[0]["name"] = "road"  # a report names the classes on its own copy
    assert "name" not in result.class_iou[0]


def test_a_labels_output_row_has_no_error_statistics():
    labels = np.random.default_rng(0).integers(0, 3, (1, 6, 8)).astype(np.int32)
    row = OutputRow.of(compare_outputs("labels", labels, labels, FP32))
    assert row.labels and row.max_abs is None and row.cosine is None and row.miou == 1.0 and row.passed
    assert OutputRow(**dataclasses.asdict(row)) == row


# --- validate's report.json --------------------------------------------------------------------------


def test_a_report_json_written_before_records_reads_and_writes_back_its_keys():
    data = json.loads(LEGACY_REPORT.read_text())
    report = ValidateReport.read(LEGACY_REPORT)
    assert report.passed and report.artifact.model == "efficientvit-seg-b0-cityscapes"
    assert report.budget.values == FP32 and report.budget.budget is report.budget.values
    assert [c.name for c in report.outputs[0].checks] == ["finite", "max_abs", "cosine", "argmax_agreement"]
    assert report.localization is not None and report.localization.first_offender is None
    assert len(report.localization.probes) == len(report.localization.ranked) >= 20
    assert report.report_dir == Path("legacy-export-0.1.0/validation")
    assert ValidateReport.from_dict(report.to_dict()) == report
    _contains(report.to_dict(), data)
    assert "## msla-deploy validate: PASS" in markdown(report)


def _report_with(outputs, localization=None) -> ValidateReport:
    data = json.loads(LEGACY_REPORT.read_text())
    report = ValidateReport.from_dict(data)
    return dataclasses.replace(
        report, outputs=outputs, passed=all(o.passed for o in outputs), localization=localization, files={}
    )


def test_a_failing_report_renders_markdown_junit_and_reads_back(tmp_path):
    ref = _logits()
    bad = ref.copy()
    bad[0, 0, 0, 0] = np.nan
    result = compare_outputs("logits", ref, bad, FP32)
    row = ValidatedOutput.of(result, checks=FP32.checks(result))
    report = _report_with([row])
    files = write_reports(report, tmp_path / "r", extra_junit=str(tmp_path / "extra.xml"))
    assert report.files == files and set(files) == {"json", "markdown", "junit", "junit_extra"}
    assert ValidateReport.read(tmp_path / "r" / REPORT_JSON) == report
    text = (tmp_path / "r" / REPORT_MD).read_text()
    assert (
        "## msla-deploy validate: FAIL" in text
        and "**Failed:**" in text
        and "| cosine similarity | - **FAIL** |" in text
    )
    suite = ET.fromstring((tmp_path / "r" / JUNIT_XML).read_bytes())
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    # the NaN pixel has no label
    assert failed == ["logits: NaN / Inf", "logits: cosine similarity", "logits: argmax agreement"]
    assert (tmp_path / "extra.xml").read_bytes() == junit_xml(report)


def test_the_report_refuses_a_newer_format_and_another_kind(tmp_path):
    data = json.loads(LEGACY_REPORT.read_text())
    with pytest.raises(BadInput, match="newer msla-deploy"):
        ValidateReport.from_dict({**data, "format": "msla-deploy/validate/2"})
    with pytest.raises(BadInput, match="expected 'msla-deploy/validate/1'"):
        ValidateReport.from_dict({**json.loads(LEGACY_PARITY.read_text()), "format": "msla-deploy/parity/1"})
    broken = copy.deepcopy(data)
    broken["outputs"][0]["nan_count"] = "none"
    with pytest.raises(BadInput, match=r"outputs\[0\].nan_count"):
        ValidateReport.from_dict(broken)


# --- the build record -----------------------------------------------------------------------------------

LEGACY_BUILD = {  # a record as trt/build.py wrote it before records (no "format")
    "stage": "build",
    "created_unix": 1700000000.0,
    "tool": {"name": "msla-deploy", "version": "0.1.0"},
    "engine": {"file": "model_fp16_trt10.3.engine", "sha256": "ab" * 32, "bytes": 1234},
    "layer_info": None,
    "timing_cache": {"file": "timing_trt10.3.cache", "sha256": "cd" * 32, "bytes": 10, "loaded": True},
    "onnx": {"file": "model_fp32.onnx", "sha256": "ef" * 32, "bytes": 99, "role": "fp32"},
    "precision": "fp16",
    "typing": "weak",
    "options": {"version_compatible": True, "dla_core": 0},
    "plan": {"onnx": "model_fp32.onnx"},
    "trtexec_equivalent": "trtexec --onnx=model_fp32.onnx",
    "tensorrt": {"version": "10.3.0", "distribution": None},
    "cuda": {"driver_version": "12.6", "runtime_version": None},
    "gpu": {"index": 0, "name": "Orin", "compute_capability": "8.7", "driver_cuda_version": "12.6"},
    "fp32_layers": {"pinned": ["/a/MatMul"], "unmatched_nodes": []},
    "dla": {"core": 0, "gpu_fallback": True, "forecast": None, "tensorrt_gpu_layers": ["x"]},
    "warnings": [],
    "notes": [],
    "build_seconds": 12.5,
    "timings_s": {"build": 12.0},
    "environment": {"python": "3.8"},
    "from_a_newer_tool": {"kept": True},
}


def test_a_build_record_reads_todays_layout_and_keeps_what_it_does_not_know():
    record = BuildRecord.from_dict(LEGACY_BUILD)
    assert record.engine == FileEntry("model_fp16_trt10.3.engine", "ab" * 32, 1234)
    assert isinstance(record.timing_cache, TimingCacheEntry) and record.timing_cache.loaded is True
    assert record.onnx == OnnxEntry("model_fp32.onnx", "ef" * 32, 99, role="fp32")
    assert (record.engine_file, record.onnx_file, record.precision, record.typing) == (
        "model_fp16_trt10.3.engine",
        "model_fp32.onnx",
        "fp16",
        "weak",
    )
    assert record.version_compatible is True and record.dla_core == 0 and record.fp32_layers.pinned == ["/a/MatMul"]
    written = record.to_dict()
    assert (
        written["format"] == "msla-deploy/build/1"
        and written["from_a_newer_tool"] == {"kept": True}
        and "extra" not in written
    )
    _contains(written, LEGACY_BUILD)
    assert BuildRecord.from_dict(written) == record and BuildRecord.from_dict(written).extra == record.extra


def test_a_manifest_keeps_its_build_records_and_refuses_a_broken_one(tmp_path):
    manifest = Manifest.from_dict(
        {"format": MANIFEST_FORMAT, "stage": "export", "builds": [LEGACY_BUILD]}, tmp_path / "manifest.json"
    )
    (build,) = manifest.builds
    assert isinstance(build, BuildRecord) and manifest.build_for("model_fp16_trt10.3.engine") is build
    again = Manifest.from_dict(manifest.to_dict(), tmp_path / "manifest.json")
    assert again.builds == manifest.builds
    broken = {**LEGACY_BUILD, "engine": {"file": 3}}
    with pytest.raises(BadInput, match=r"manifest.json: builds\[0\]: engine.file is int"):
        Manifest.from_dict({"builds": [broken]}, tmp_path / "manifest.json")
    with pytest.raises(BadInput, match="builds is dict"):
        Manifest.from_dict({"builds": {}}, tmp_path / "manifest.json")


def test_build_json_of_today_reads_and_appends(tmp_path):
    engine = tmp_path / "model_fp16_trt10.3.engine"
    (tmp_path / "build.json").write_text(
        json.dumps({"format": MANIFEST_FORMAT, "stage": "build", "onnx": "m.onnx", "builds": [LEGACY_BUILD]})
    )
    found = BuildsFile.read_beside(engine)
    assert found.onnx == "m.onnx" and found.builds[0].engine_file == engine.name
    found.builds.append(BuildRecord(engine=FileEntry(engine.name, "00", 1)))
    found.write(tmp_path / "build.json")
    again = BuildsFile.read_beside(engine)
    assert again == found and json.loads((tmp_path / "build.json").read_text())["format"] == "msla-deploy/builds/1"
    assert BuildsFile.read_beside(tmp_path / "elsewhere" / "x.engine") is None


# --- the report writer -------------------------------------------------------------------------------------


def test_junit_suite_takes_cases_or_tuples():
    xml = junit_suite("s", "c", [JUnitCase("ok", True, "fine", ""), ("bad", False, "measured 2", "too big")], 1.5)
    suite = ET.fromstring(xml)
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = next(suite.iter("failure"))
    assert failure.get("message") == "too big" and failure.text == "measured 2"


def test_write_report_files_writes_a_dict_too(tmp_path):
    """The form a stage whose report is not a record yet still passes (evaluate's)."""
    report = {"passed": True}
    files = write_report_files(report, tmp_path, "# x\n", b"<x/>\n")
    assert json.loads((tmp_path / REPORT_JSON).read_text()) == {"passed": True, "files": files}


def test_markdown_table_lines():
    assert table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]
