.PHONY: install test lint typecheck check bench fixtures

install:
	pip install -e ".[dev]"

test:
	# byte-code first, as `pip install .` does: the tests start hundreds of labbook
	# processes, and with PYTHONDONTWRITEBYTECODE set each would compile labbook again
	python -m compileall -q labbook tui/labbook_tui
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
