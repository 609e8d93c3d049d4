# polyroute: the two commands the README opens with, and a few more.
#   make serve   install into .venv and start the gateway on the embedded default
#   make test    install into .venv and run the whole test suite

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python builds from source; a portable build so the wheel pip caches runs anywhere.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: install serve test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,local]"
	touch $@

serve: install
	$(BIN)/polyroute serve $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check polyroute tests bench
	$(BIN)/mypy polyroute

bench: install
	bench/run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
