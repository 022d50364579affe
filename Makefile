# Shortcuts for the scripts (make may be missing on a fresh machine: the scripts are enough).
.PHONY: demo test bench setup

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

setup:
	bash scripts/bootstrap.sh test

bench:
	.venv/bin/python benchmarks/volume_throughput.py
