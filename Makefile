# Set-up and everyday commands. `make run` and `make test` do all set-up
# on a fresh machine (a virtualenv in .venv with requirements.txt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export GATEWAY_HANDLERS ?= handlers.audit,handlers.message_status

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: install
	GATEWAY_BIND=$${GATEWAY_BIND:-127.0.0.1:8000} $(BIN)/gunicorn app:app --config gunicorn.conf.py

# pytest's exit 5 ("no tests ran") is a failure here, not a pass.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy --strict --ignore-missing-imports gateway

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache
