# kdlab: every target bootstraps .venv itself (python3 -m venv + uv), so a fresh clone needs only
#   make lab    JupyterLab on 127.0.0.1 with a token, opened on notebooks/
#   make test   the whole suite: unit tests, every notebook in the smoke profile (papermill + nbval)
#   make run    every notebook headless in the class profile, with one table of run times and key numbers
#   make reproduce   the papers' headline settings at paper scale (GPU); SETTINGS=..., REPRODUCE_ARGS=--dry-run
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.kdlab-installed
PROFILE ?= class
PYTEST_ARGS ?=
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: venv lab test unit notebooks run doctor gpu-test bench student sweep reproduce clean-runs

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install --python $(PY) --compile-bytecode -q -c constraints.txt -e ".[lab,test,assign,sweep]"
	@touch $(STAMP)

venv: $(STAMP)

lab: venv
	@token=$${KDLAB_TOKEN:-$$($(PY) -c 'import secrets; print(secrets.token_hex(16))')}; \
	port=$${KDLAB_PORT:-8888}; \
	echo "kdlab: JupyterLab at http://127.0.0.1:$$port/lab?token=$$token (localhost only; Ctrl-C stops it)"; \
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --port $$port --ServerApp.port_retries=0 --no-browser $(ALLOW_ROOT) \
		--ServerApp.root_dir=notebooks --IdentityProvider.token=$$token

test: venv
	KDLAB_PROFILE=smoke KDLAB_HEADLESS=1 $(PY) -m pytest tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=240 -p no:cacheprovider $(PYTEST_ARGS)

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

clean-runs:
	rm -rf runs
