# Every target sets up .venv on first use; later runs skip the install (stamp file).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e ".[dev,biggan,tensorboard,diffusion]"
	$(BIN)/pip install -q --no-deps gan-face-generate==1.1.1  # the face GAN; its declared deps (wandb, matplotlib) are not needed
	$(MAKE) browser
	touch $(STAMP)

# tests/test_review.py drives the review page in headless Chromium; install it where apt can (root)
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
	  echo "chromium not installed: tests/test_review.py will skip its browser test"

demo: $(STAMP)
	$(BIN)/fairgen demo

# Tests run one torch thread each (tests/conftest.py), so two worker processes use both cores;
# a test file stays on one worker (its module fixtures are built once). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

LINTED := fairgen steering audits plumbing tests benchmarks examples
lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

clean:
	rm -rf $(VENV) build *.egg-info
