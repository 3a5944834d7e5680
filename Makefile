# The two commands a newcomer runs: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
WORLD  ?= .cache/world
SEED   ?= 42
# Pinned so pip takes the CPU build of torch that lies on these machines' disk instead of
# downloading a multi-GB CUDA build.
CONSTRAINTS := constraints.txt

.PHONY: install demo test test-fast bench eval lint clean classifier-model ranker-model teacher-model tagger-model

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,scale]'
	touch $@

# Builds the sample world (first run only), shows the topic filter and a cold-start feed, then serves
# the feed API on an embedded Redis (Ctrl-C stops both) and prints example requests that work.
demo: install
	@test -f $(WORLD)/world.json || $(VENV)/bin/clipfeed world build --out $(WORLD) --seed $(SEED)
	@$(PY) -m cli.demo $(WORLD)
	CLIPFEED_WORLD_DIR=$(WORLD) CLIPFEED_DATA_DIR=$(CURDIR)/.cache/data $(VENV)/bin/clipfeed serve

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/world_build.py
	$(PY) benchmarks/tagger_bench.py
	$(PY) benchmarks/label_resume.py
	$(PY) benchmarks/classifier_real.py
	$(PY) benchmarks/recommender_bench.py
	$(PY) benchmarks/ann_bench.py --json-out .cache/bench/ann.json
	$(PY) benchmarks/api_load.py --json-out .cache/bench/api_load.json
	$(PY) benchmarks/servelog_bench.py --json-out .cache/bench/servelog.json
	$(PY) benchmarks/scale_bench.py --ms-per-query 10 --wait-ms-per-query 20 --json-out .cache/bench/scale.json

# Reproduces the shipped topic model (classifier/shipped/) from two seeded worlds.
classifier-model: install
	$(VENV)/bin/clipfeed world build --out .cache/world-42 --seed 42 --quiet
	$(VENV)/bin/clipfeed world build --out .cache/world-8 --seed 8 --quiet
	$(VENV)/bin/clipfeed classifier train --world .cache/world-42 --dev-world .cache/world-8 \
		--out classifier/shipped --seed 0

# The offline evaluation of every stage, headless: .cache/eval-report/report.md, figures, metrics.json
# (the same numbers as the notebooks in notebooks/; a few minutes on 2 cores, most of it the teacher LLM).
eval: install
	@test -f $(WORLD)/world.json || $(VENV)/bin/clipfeed world build --out $(WORLD) --seed $(SEED)
	$(VENV)/bin/clipfeed eval report --world $(WORLD) --out .cache/eval-report

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache

# Reproduces the shipped LambdaRank model (recommender/shipped/) from the seed-42 world.
ranker-model: install
	$(VENV)/bin/clipfeed world build --out .cache/world-42 --seed 42 --quiet
	$(VENV)/bin/clipfeed ranker train --world .cache/world-42 --out recommender/shipped --seed 0

# Reproduces the shipped teacher adapter (tagger/shipped/teacher/): LoRA on the gold train split.
teacher-model: install
	$(VENV)/bin/clipfeed tagger train-teacher --out tagger/shipped/teacher --seed 0 --device cpu

# Reproduces the shipped student (tagger/shipped/student/): the tuned teacher labels 1,500 capped
# searches of the seed-42 world, then the student is distilled from those labels + gold train rows.
tagger-model: install
	$(VENV)/bin/clipfeed world build --out .cache/world-42 --seed 42 --quiet
	$(VENV)/bin/clipfeed tagger label --queries .cache/world-42/queries.jsonl --out .cache/labels-42 \
		--max-share 0.03 --limit 1500 --device cpu
	$(VENV)/bin/clipfeed tagger distill --labels .cache/labels-42 --world .cache/world-42 \
		--out tagger/shipped/student --seed 0 --device cpu
