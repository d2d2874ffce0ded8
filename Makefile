# Self-bootstrapping targets: each creates .venv and installs the project when needed.
# GPU users: make run TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..." (any torch >= 2.2 works).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.haq-rl-installed

.PHONY: run test test-random test-slow lint bench clean fashion-mnist

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIP_EXTRA) "$(TORCH_SPEC)" -e ".[dev]"
	touch $(STAMP)

# Fashion-MNIST, the default benchmark's data: Debian's package where apt-get and root are
# there (30.9 MB, offline from the Debian mirror); elsewhere haq-rl looks in $$HAQ_RL_DATA
# and downloads the official files on first use (docs/benchmark.md).
FASHION_DIR := /usr/share/datasets/fashion-mnist
fashion-mnist:
	@if [ ! -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
	      || echo "could not install dataset-fashion-mnist; haq-rl will try the official download"; \
	  else echo "Fashion-MNIST: no $(FASHION_DIR) and no root apt-get; haq-rl looks in \$$HAQ_RL_DATA/fashion-mnist, then downloads"; fi; \
	fi

# The main job: search the default env (guided agent, 80 episodes), fine-tune the best
# policy with the uniform baselines, write the report.
# A second `make run` resumes (or reuses) the finished search in $(RUN_DIR).
RUN_DIR ?= runs/default
SEARCH_ARGS ?=
run: $(STAMP) fashion-mnist
	if [ -f $(RUN_DIR)/config.json ]; then $(BIN)/haq-rl search --resume $(RUN_DIR); \
	else $(BIN)/haq-rl search --out $(RUN_DIR) $(SEARCH_ARGS); fi
	$(BIN)/haq-rl finetune $(RUN_DIR)
	$(BIN)/haq-rl report $(RUN_DIR)

test: $(STAMP) fashion-mnist
	$(BIN)/python -m pytest -q -m "not slow" --timeout=900

# The default suite in a random order (pytest-random-order): no test may depend on another's state.
test-random: $(STAMP) fashion-mnist
	$(BIN)/python -m pytest -q -m "not slow" --timeout=900 --random-order

test-slow: $(STAMP) fashion-mnist
	$(BIN)/python -m pytest -q -m slow --timeout=3600

lint: $(STAMP)
	$(BIN)/ruff check haq_rl tests bench
	$(BIN)/mypy haq_rl

bench: $(STAMP)
	for script in bench/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
