.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	HF_HUB_OFFLINE=1 .venv/bin/prodlens demo

test: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q
