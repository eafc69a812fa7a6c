# The README's two commands: `make demo` (the main job on the embedded default) and
# `make test` (the test suite). Each creates the virtual environment and installs srframe
# first; a second run reuses it. Set VENV to keep the environment elsewhere.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp names this checkout, so an environment shared between clones (CI's cache)
# re-points its editable install; it is remade whenever pyproject.toml changes.
STAMP := $(VENV)/.srframe-installed-$(shell printf '%s' "$(CURDIR)" | sha1sum | cut -c1-12)

.PHONY: setup demo test

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.srframe-installed-*
	touch $@

demo: setup
	$(BIN)/srframe plugins
	$(BIN)/srframe recipe check recipes/quickstart_x4.toml
	$(BIN)/srframe recipe show recipes/quickstart_x4.toml

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)
