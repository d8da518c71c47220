#!/usr/bin/env bash
# Creates the scratch virtualenv (.golden-venv, git-ignored) that the golden-vector scripts
# run in. Only the scripts that regenerate vectors need it; the Rust test suite reads the
# committed vectors and needs no Python.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x .golden-venv/bin/python ]; then
  python3 -m venv .golden-venv
fi
.golden-venv/bin/python -m pip install --disable-pip-version-check -q -r scripts/golden/requirements.txt
echo "golden venv ready: .golden-venv/bin/python"
