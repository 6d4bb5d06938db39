# kdlab: every target bootstraps .venv itself (python3 -m venv + uv), so a fresh clone needs only
#   make lab    JupyterLab on 127.0.0.1 with a token, on your own copies in work/ (student versions; solutions in work/solutions/)
#   make author JupyterLab on the sources in notebooks/ with nbgrader; git strips outputs from notebooks on commit
#   make test   the whole suite: unit tests, every notebook in the smoke profile (papermill + nbval)
#   make test-class  every solution notebook, its exercise checks included, in the class profile (about 25 min)
#   make run    every notebook headless in the class profile, with one table of run times and key numbers
#   make edges  every notebook at the edges of its parameters: allowed extremes run in smoke, others are refused
#   make reproduce   the papers' headline settings at paper scale (GPU); SETTINGS=..., REPRODUCE_ARGS=--dry-run
#   make book   the course as a static site in _build/html/ (every notebook executed in PROFILE, cached); BOOK_ARGS=--check
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.kdlab-installed
PROFILE ?= class
PYTEST_ARGS ?=

.PHONY: edges venv lab author test test-class unit notebooks run doctor gpu-test bench student sweep reproduce clean-runs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install --python $(PY) --compile-bytecode -q -c constraints.txt -e ".[lab,test,assign,sweep,book]"
	@touch $(STAMP)

venv: $(STAMP)

lab: venv
	$(PY) -m kdlab.cli lab

author: venv
	$(PY) -m kdlab.cli lab --author

test: venv
	KDLAB_PROFILE=smoke KDLAB_HEADLESS=1 $(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=240 -p no:cacheprovider --durations=40 $(PYTEST_ARGS)

test-class: venv
	KDLAB_CLASS_TESTS=1 KDLAB_HEADLESS=1 $(PY) -m pytest tests/notebooks/test_class_profile.py -p no:cacheprovider $(PYTEST_ARGS)

unit: venv
	KDLAB_HEADLESS=1 $(PY) -m pytest tests/unit $(PYTEST_ARGS)

run: venv
	$(PY) -m kdlab.cli run --profile $(PROFILE) --out runs/$(PROFILE)

doctor: venv
	$(PY) -m kdlab.cli doctor

gpu-test: venv
	KDLAB_HEADLESS=1 $(PY) -m pytest tests -m gpu $(PYTEST_ARGS)

sweep: venv
	$(PY) -m kdlab.cli sweep notebooks/01_knowledge_distillation.ipynb --grid examples/sweep_alpha_temperature.yaml \
		--profile $(PROFILE) --workers 2 --out runs/sweeps/alpha_temperature

student: venv
	$(PY) -m kdlab.cli student --out release --instructor

bench: venv
	$(PY) benchmarks/bench_meta.py --quick

SETTINGS ?= all
REPRODUCE_ARGS ?=
reproduce: venv
	$(PY) -m kdlab.cli reproduce $(SETTINGS) $(REPRODUCE_ARGS)

edges: venv
	KDLAB_HEADLESS=1 $(PY) -m kdlab.cli edges

clean-runs:
	rm -rf runs

.PHONY: book
BOOK_ARGS ?=
book: venv
	KDLAB_HEADLESS=1 OMP_NUM_THREADS=1 $(PY) -m kdlab.book build --profile $(PROFILE) $(BOOK_ARGS)
