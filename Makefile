# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: setup setup-test demo test test-unit test-integration up down lint dashboards clean

setup:
	@bash scripts/setup.sh

# What only the tests need, built once and cached under ~/.cache/guardian: helm (from its Go
# module), kube-apiserver and etcd (from Go modules, ~13 min cold on 2 cores), the broker plugin jar.
setup-test: setup
	@echo "==> helm"; bash scripts/install-helm.sh >/dev/null
	@echo "==> kube-apiserver and etcd (cached after the first build)"; $(PYTHON) -m guardian_dev.kubernetes build
	@echo "==> broker plugin jar"; $(PYTHON) -c "from guardian_dev.plugin import ensure_plugin_jar as e; from guardian.settings import DevSettings as S; print(e(S().home, print))"

demo: setup
	$(PYTHON) -m guardian_dev demo

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: setup-test
	@$(PYTHON) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-unit: setup
	@$(PYTHON) -m pytest -m "not integration" $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || exit 1; exit $$rc

test-integration: setup-test
	@$(PYTHON) -m pytest -m integration $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || exit 1; exit $$rc

up: setup
	$(PYTHON) -m guardian_dev up

down:
	$(PYTHON) -m guardian_dev down

lint:
	lint-imports
	$(PYTHON) -m dashboards.render --check

dashboards:
	$(PYTHON) -m dashboards.render

clean:
	rm -rf .pytest_cache build *.egg-info guardian_dev/*.egg-info .guardian-install.stamp
