# dranet — developer entry points. Every target sets itself up (venv, packages).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find api -name '*.proto' | sort)
STAMP := $(VENV)/.installed
PROTOC_PLUGINS := --plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc

.PHONY: test lint proto demo bench clean system-deps

system-deps:
	@scripts/system-deps

$(STAMP): pyproject.toml | system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -I api $(PROTOC_PLUGINS) \
		--python_out=api --mypy_out=api --grpc_python_out=api --mypy_grpc_out=api $(PROTOS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: system-deps lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(VENV)/bin/dranet demo $(DEMO_ARGS)

bench: $(STAMP)
	$(VENV)/bin/pytest tests/bench --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,max,rounds $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
