#!/usr/bin/env bash
# The device check of issue 14 (see benchmarks/gpu_check.py): on a CUDA machine, in at most
# 8 minutes, the `cuda` tests, the GPU benchmarks and a short training of every tiny preset,
# written to one JSON ($OUT/gpu_check.json, else benchmarks/results/gpu_check.json). Without
# CUDA it says so and exits 0 after a CPU dry run of the same steps at tiny sizes (under a
# minute). The JSON is rewritten after every step, so a run cut short still reports; the time
# plan (every step's timeout, required steps first) is in gpu_check.py's docstring. The exit
# status is 1 when a step failed (a cuda test, a benchmark row, a training run; listed under
# "failed" in the JSON), on a GPU or in the dry run; steps skipped for time do not count. The
# dry run's 10-s trainings and 60-s test collection can fail on a heavily loaded machine.
#
#   bash benchmarks/gpu_check.sh
#
# Runs from a fresh copy of the repository with no internet: torch must be installed; the
# project is installed in place (pip install -e . --no-deps --no-build-isolation) when it is not
# importable yet, and missing packages are listed before anything runs.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: torch is not importable with $PY; install it first" >&2
    exit 1
fi
if ! "$PY" -c "import nanogan" 2>/dev/null; then
    timeout 120 "$PY" -m pip install -e . --no-deps --no-build-isolation -q \
        || echo "gpu_check: pip install -e . failed; running from the source tree" >&2
fi
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA available:', torch.cuda.is_available())"
# The steps time out inside gpu_check.py within its 480 s budget; this outer limit (500 s, then
# SIGKILL 10 s later) only catches a hang of gpu_check.py itself.
timeout -k 10 500 "$PY" benchmarks/gpu_check.py
status=$?
if [ "$status" -ne 0 ]; then
    echo "gpu_check: failed with status $status" >&2
fi
exit "$status"
