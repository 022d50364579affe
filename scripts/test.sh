#!/usr/bin/env bash
# The whole test suite on a fresh machine: install with test tools, start the engine and build
# the helper image, lint, then pytest (the S3 server is started by the test fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
echo "== ruff"
.venv/bin/ruff check opskit tests benchmarks
echo "== mypy"
.venv/bin/mypy opskit
echo "== pytest"
# Two workers: most of the time is spent waiting on the engine, so two cores run the suite in
# about half the time. Tests use unique names and count only their own containers and volumes.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest -n "${OPSKIT_TEST_WORKERS:-2}" "$@"
