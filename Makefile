# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit test-integration up down lint clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PYTHON) -m guardian.cli demo

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: setup
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-unit: setup
	@$(PYTHON) -m pytest -m "not integration" $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || exit 1; exit $$rc

test-integration: setup
	@$(PYTHON) -m pytest -m integration $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || exit 1; exit $$rc

up: setup
	$(PYTHON) -m guardian.cli dev up

down:
	$(PYTHON) -m guardian.cli dev down

lint:
	lint-imports

clean:
	rm -rf .pytest_cache build *.egg-info .guardian-install.stamp
