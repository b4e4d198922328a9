.PHONY: install test lint typecheck check bench fixtures

install:
	pip install -e ".[dev]"

test:
	python -m pytest

lint:
	ruff check labbook tui tests benchmarks examples
	ruff format --check labbook tui
	lint-imports

typecheck:
	mypy

check: lint typecheck test

bench:
	python benchmarks/bench_concurrency.py
	python benchmarks/bench_tfevents.py
	python benchmarks/bench_import.py
	python benchmarks/bench_query.py
