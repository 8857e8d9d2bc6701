#!/usr/bin/env bash
# Install, then run the whole test suite (real-model tests marked `slow` included; add -m "not slow" to skip them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export BLOCKPRUNE_DATA=${BLOCKPRUNE_DATA:-$(cd .. && pwd)/shared/data}
exec python3 -m pytest -q "$@"
