#!/usr/bin/env bash
# The device check: on a machine with TensorRT and a GPU (a Jetson above all), run what CI
# cannot: build fp16 engines (strongly and weakly typed, where this TensorRT allows each),
# validate and bench them, and run the test suite's TensorRT tests. Everything lands in one
# folder (doctor's report, every command's JSON and log, a summary) to attach to an issue.
#
#   scripts/device-check.sh [EXPORT_DIR] [--out DIR] [--model NAME] [--res HxW] [--iterations N] [--no-tests]
#
# EXPORT_DIR: an fp16 export made on the workstation (msla-deploy export -p fp16 ...), copied
# here. Without it the script exports one itself, which needs torch (rare on a Jetson).
# The export is copied into the report folder first: the folder you pass is never written to.
#
# A bash script rather than `doctor --full`: it drives the commands exactly as a user types them,
# and runs pytest from a checkout, which an installed wheel does not carry.
#
# Exit codes: 0 every step passed, 1 a step failed (see summary.md), 2 bad arguments,
# 3 this machine cannot run the check (no TensorRT, GPU or CUDA runtime; doctor says why).
set -uo pipefail

usage() { sed -n '7p' "$0" | sed 's/^#   /usage: /'; }
die() { echo "device-check: error: $1" >&2; exit "${2:-2}"; }

EXPORT_DIR="" OUT="" MODEL="efficientvit-seg-b0-cityscapes" RES="512x1024" ITERATIONS=50 RUN_TESTS=1
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -o|--out) [ $# -ge 2 ] || die "--out needs a folder"; OUT="$2"; shift 2 ;;
        --model) [ $# -ge 2 ] || die "--model needs a zoo name"; MODEL="$2"; shift 2 ;;
        --res) [ $# -ge 2 ] || die "--res needs HxW"; RES="$2"; shift 2 ;;
        --iterations) [ $# -ge 2 ] || die "--iterations needs a number"; ITERATIONS="$2"; shift 2 ;;
        --no-tests) RUN_TESTS=0; shift ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) [ -z "$EXPORT_DIR" ] || die "one export directory only (got $EXPORT_DIR and $1)"; EXPORT_DIR="$1"; shift ;;
    esac
done
case "$ITERATIONS" in ''|*[!0-9]*) die "--iterations must be a whole number, not '$ITERATIONS'" ;; esac
if [ -n "$EXPORT_DIR" ] && [ ! -f "$EXPORT_DIR/manifest.json" ]; then
    die "$EXPORT_DIR is not an export directory (no manifest.json): pass the folder msla-deploy export wrote"
fi

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if command -v msla-deploy >/dev/null 2>&1; then MSLA=(msla-deploy); else MSLA=("$PYTHON" -m msla_deploy); fi
"${MSLA[@]}" --version >/dev/null 2>&1 || die "msla-deploy is not installed for $PYTHON (pip install the wheel: see docs/build-and-jetson.md)" 3

OUT="${OUT:-device-check-$(hostname -s 2>/dev/null || echo host)-$(date -u +%Y%m%dT%H%M%SZ)}"
[ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ] && die "$OUT exists and is not empty: choose another --out"
mkdir -p "$OUT" || die "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.md"
FAILED=0
{ echo "# msla-deploy device check"; echo; echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname 2>/dev/null), $("${MSLA[@]}" --version 2>&1)"; echo
  echo "| step | result | seconds | output |"; echo "| --- | --- | --- | --- |"; } >"$SUMMARY"

# step NAME EXPECTED_REFUSAL -- command...: runs it with stdout to NAME.json (or .txt), stderr to NAME.log
step() {
    local name="$1" refusal="$2"; shift 3
    local out="$OUT/$name.json" start end rc result
    case " $* " in *" --json "*) ;; *) out="$OUT/$name.txt" ;; esac
    echo "== $name: $*" >&2
    start=$(date +%s)
    "$@" >"$out" 2>"$OUT/$name.log"
    rc=$?
    end=$(date +%s)
    if [ $rc -eq 0 ]; then result="pass"
    elif [ "$refusal" = "refusal-ok" ] && [ $rc -eq 2 ]; then result="not on this TensorRT: $(grep -m1 '^error:' "$OUT/$name.log" | cut -c1-200)"
    else result="FAIL (exit $rc): $(grep -m1 '^error:' "$OUT/$name.log" | cut -c1-200)"; FAILED=1
    fi
    echo "| $name | $result | $((end - start)) | $(basename "$out"), $name.log |" >>"$SUMMARY"
    echo "   -> $result" >&2
    return $rc
}

# 1. what this machine has; stop here, saying why, when it cannot build or run an engine
"${MSLA[@]}" doctor >"$OUT/doctor.txt" 2>&1
"${MSLA[@]}" doctor --json >"$OUT/doctor.json" 2>"$OUT/doctor.log" || die "doctor failed (see $OUT/doctor.log)" 1
MISSING="$("$PYTHON" - "$OUT/doctor.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for name in ("tensorrt", "gpu", "cuda-runtime"):
    c = report["components"][name]
    if not c["ok"]:
        print(f"{name}: {c['detail']}" + (f" ({c['fix']})" if c["fix"] else ""))
EOF
)"
if [ -n "$MISSING" ]; then
    echo "| doctor | cannot run the device check here | - | doctor.txt, doctor.json |" >>"$SUMMARY"
    echo "device-check: this machine cannot build or run TensorRT engines:" >&2
    echo "$MISSING" | sed 's/^/  /' >&2
    echo "device-check: doctor's full report is in $OUT/doctor.txt (and .json); run this on the target GPU or Jetson" >&2
    exit 3
fi
echo "| doctor | pass | - | doctor.txt, doctor.json |" >>"$SUMMARY"

# 2. the export: a copy of the given one, or a fresh fp16 export where torch is installed
if [ -n "$EXPORT_DIR" ]; then
    cp -R "$EXPORT_DIR" "$OUT/export" || die "cannot copy $EXPORT_DIR into $OUT" 1
    echo "| export | copied from $EXPORT_DIR | - | export/ |" >>"$SUMMARY"
else
    "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" 2>/dev/null \
        || die "no export directory given and torch is not installed here: export on the workstation (msla-deploy export -m $MODEL -r $RES -p fp16 -o DIR), copy DIR here and pass it" 3
    step export strict -- "${MSLA[@]}" export -m "$MODEL" -r "$RES" -p fp16 -o "$OUT/export" --json \
        || { echo "device-check: export failed, see $OUT/export.log" >&2; exit 1; }
fi

# 3. engines: strongly and weakly typed fp16 (build refuses, exit 2, what this version lacks)
ENGINES=()
for typing in strong weak; do
    engine="$OUT/export/device-check-fp16-$typing.engine"
    if step "build-fp16-$typing" refusal-ok -- "${MSLA[@]}" build "$OUT/export" --precision fp16 --typing "$typing" -o "$engine" --json; then
        ENGINES+=("$typing")
    fi
done
step build-print-trtexec strict -- "${MSLA[@]}" build "$OUT/export" --precision fp16 --print-trtexec

# 4. validate and bench each engine against the export's reference bundle
step validate-onnx strict -- "${MSLA[@]}" validate "$OUT/export" --report-dir "$OUT/validate-onnx" --json
for typing in "${ENGINES[@]}"; do
    engine="$OUT/export/device-check-fp16-$typing.engine"
    step "validate-fp16-$typing" strict -- "${MSLA[@]}" validate "$engine" --reference "$OUT/export/reference" --backend trt \
        --report-dir "$OUT/validate-fp16-$typing" --json
    step "bench-fp16-$typing" strict -- "${MSLA[@]}" bench "$engine" --backend trt --iterations "$ITERATIONS" \
        --plot "$OUT/bench-fp16-$typing.png" --json
    step "bench-fp16-$typing-cuda-graph" strict -- "${MSLA[@]}" bench "$engine" --backend trt --iterations "$ITERATIONS" --cuda-graph --json
done

# 5. the test suite's TensorRT tests (they skip where TensorRT is absent, as on CI). Without
# torch, test modules that import the export side at the top cannot be collected: left out, named.
if [ "$RUN_TESTS" -eq 1 ]; then
    if [ -d "$HERE/tests" ] && "$PYTHON" -c "import pytest" 2>/dev/null; then
        IGNORE=()
        if ! "$PYTHON" -c "import torch" 2>/dev/null; then
            for f in $(cd "$HERE" && grep -l -E '^(import torch|from torch|from msla_deploy\.(export|zoo|nn|convert)|from tests\.[a-z_]+\.test_(validate|export))' tests/*/test_*.py); do
                IGNORE+=("--ignore=$f")
            done
            echo "| pytest-tensorrt (note) | torch is not installed: left out ${IGNORE[*]:-nothing} | - | - |" >>"$SUMMARY"
        fi
        (cd "$HERE" && step pytest-tensorrt strict -- "$PYTHON" -m pytest -q -rs -k "trt or tensorrt or engine or dla" \
            --junitxml "$OUT/pytest-tensorrt.xml" "${IGNORE[@]}" tests) || FAILED=1
    else
        echo "| pytest-tensorrt | skipped: needs a checkout with tests/ and pytest | - | - |" >>"$SUMMARY"
    fi
fi

echo >>"$SUMMARY"
[ $FAILED -eq 0 ] && echo "All steps passed." >>"$SUMMARY" || echo "Some steps FAILED: their .log files say why." >>"$SUMMARY"
echo "device-check: report in $OUT (summary.md)" >&2
exit $FAILED
