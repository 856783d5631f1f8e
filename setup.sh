#!/usr/bin/env bash
# One-command set-up after cloning: a virtual environment in .venv with qwen35 installed (editable).
#   ./setup.sh          the server and the CLI
#   ./setup.sh --dev    also the test tools (pytest, ruff, mypy, playwright, ...) and Debian's chromium (needs root/apt)
# Then: . .venv/bin/activate && qwen35 serve --model Qwen/Qwen3.5-4B --dummy-weights
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first, pinned as in CI; on a GPU machine install your CUDA build of torch into .venv instead
.venv/bin/pip install -q torch==2.13.0
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/pip install -q -e ".[test]"
  command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
else
  .venv/bin/pip install -q -e .
fi
echo "qwen35 is installed in .venv. Next: . .venv/bin/activate && qwen35 serve --model Qwen/Qwen3.5-4B --dummy-weights"
