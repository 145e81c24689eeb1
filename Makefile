# Every target installs what it needs first (tests/scripts/setup.sh is idempotent).
VENV ?= $(HOME)/.cache/orthanc-ops/venv
# One tree per checkout, so that two checkouts never test each other's files.
TREE_ROOT ?= $(or $(TMPDIR),/tmp)/orthanc-ops-tree$(subst /,-,$(CURDIR))
TREE = $(TREE_ROOT)/ansible_collections/orthanc_ops/backup
PYTEST = ORTHANC_OPS_COLLECTIONS=$(TREE_ROOT) PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python -m pytest

.PHONY: test quick setup tree sanity sanity-oldest sanity-newest lint units integration changelog-lint docs-lint demo bench bench-databases bench-fleet bench-audit bench-scale bench-offsite bench-recover bench-authentication

test: setup sanity sanity-oldest sanity-newest lint changelog-lint docs-lint units integration

setup:
	@bash tests/scripts/setup.sh >/dev/null

tree: setup
	@bash tests/scripts/collection-tree.sh $(TREE_ROOT) >/dev/null

sanity: tree
	bash tests/scripts/ansible-test.sh $(VENV) $(TREE) sanity --venv --python 3.13 --color no

# The oldest ansible-core meta/runtime.yml claims (its venv from tests/requirements-oldest.txt), on Python 3.12.
sanity-oldest: tree
	bash tests/scripts/ansible-test.sh $(VENV)-oldest $(TREE) sanity --venv --python 3.12 --color no

# The newest released ansible-core (tests/requirements-newest.txt). Its pylint test installs dill from github.com,
# which the test machines cannot reach: pylint runs with the two versions above.
sanity-newest: tree
	bash tests/scripts/ansible-test.sh $(VENV)-newest $(TREE) sanity --venv --python 3.13 --color no --skip-test pylint

lint: tree
	cd $(TREE) && NO_COLOR=1 ANSIBLE_COLLECTIONS_PATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/ansible-lint --offline -q

changelog-lint: setup
	$(VENV)/bin/antsibull-changelog lint

# The docsite guides (docs/docsite) and every module's and role's documentation, as a docsite build reads them.
docs-lint: tree
	cd $(TREE) && ANSIBLE_COLLECTIONS_PATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/antsibull-docs \
		lint-collection-docs --plugin-docs .

units: tree
	cd $(TREE) && $(PYTEST) -q -p no:cacheprovider tests/unit

# Two workers, one test file each at a time: most of a test is waiting (Orthanc stopping, ansible-playbook
# starting), and a file's tests share its fixtures (the fleet, the off-site servers). The tests marked
# destructive change the whole machine: they run afterwards, alone.
INTEGRATION_WORKERS ?= 2

integration: tree
	cd $(TREE) && $(PYTEST) -q -p no:cacheprovider --durations=30 -n $(INTEGRATION_WORKERS) --dist loadfile \
		-m 'not destructive' tests/integration
	cd $(TREE) && $(PYTEST) -q -p no:cacheprovider -m destructive tests/integration

# While changing code: the pure-logic tests and the integration tests marked neither slow nor destructive,
# in under a minute.
quick: tree
	cd $(TREE) && $(PYTEST) -q -p no:cacheprovider tests/unit
	cd $(TREE) && $(PYTEST) -q -p no:cacheprovider -n $(INTEGRATION_WORKERS) --dist loadfile \
		-m 'not slow and not destructive' tests/integration

demo: tree
	PATH=$(VENV)/bin:$$PATH bash tests/scripts/demo.sh $(TREE_ROOT)

bench: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/sqlite_outage.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-databases: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/database_backup.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-fleet: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/fleet_backup.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-audit: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/storage_audit.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-scale: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/scale.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-offsite: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/offsite.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-recover: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/recover.py --collections $(TREE_ROOT) $(BENCH_ARGS)

bench-authentication: tree
	PYTHONPATH=$(TREE_ROOT) PATH=$(VENV)/bin:$$PATH $(VENV)/bin/python bench/authentication.py --collections $(TREE_ROOT) $(BENCH_ARGS)
