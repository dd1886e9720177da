# onprem.ingress — the two commands a user needs: `make lab` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
PYTHON      ?= python3
export PATH := $(VENV)/bin:$(PATH)
# The collection is visible to Ansible, mypy and pytest as ansible_collections.onprem.ingress
# through a symlink into this checkout (no copy to go stale).
COLLECTIONS := $(CURDIR)/.cache/collections
COLL_LINK   := $(COLLECTIONS)/ansible_collections/onprem/ingress
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
VERSION     := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL     := $(CURDIR)/.cache/build/onprem-ingress-$(VERSION).tar.gz
# Outside this git checkout: inside it, ansible-test would list files with git and see none.
SANITY_ROOT := $(or $(TMPDIR),/tmp)/onprem-ingress-sanity

.PHONY: help test checks lab lab-down host-deps venv controlplane collection-link lint sanity build dist pytest pytest-untimed pytest-timing molecule clean

help:
	@echo "make lab       a local on-prem site: nodes, client, control plane; site.yml; the seeds' demo"
	@echo "make lab-down  remove everything make lab created"
	@echo "make test   everything: set-up, lint, ansible-test sanity, pytest, molecule"
	@echo "make dist   the onprem-lb engine as one file (dist/onprem-lb-VERSION.pyz)"

# Gates that do not measure time run in two lanes side by side (output grouped per lane): lint,
# sanity and the tests not marked `timing`, one after the other, beside the molecule scenarios
# (whose verify steps overlap the tests, as before, never sanity); the tests that measure failover
# and handover gaps (marker `timing`) run last and alone.
test: host-deps venv controlplane collection-link dist
	$(MAKE) --no-print-directory -j2 --output-sync=target checks molecule
	$(MAKE) --no-print-directory pytest-timing
	@echo "make test: all gates passed"

checks:
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory pytest-untimed

host-deps:
	scripts/host-deps.sh

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-engine.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

controlplane:
	lab/bin/controlplane build

collection-link:
	mkdir -p $(dir $(COLL_LINK))
	ln -sfn $(CURDIR) $(COLL_LINK)

lint: venv collection-link
	ruff check .
	ruff format --check .
	mypy plugins src/onprem_lb tests bench
	# the engine runs on the nodes' Python 3.9+: mypy's oldest target catches newer APIs (the
	# built file is run on 3.9 itself by tests/e2e/test_engine_file.py)
	mypy --python-version 3.10 src/onprem_lb
	mypy extensions/molecule/site extensions/molecule/conftest.py
	for script in lab/bin/controlplane lab/bin/lab lab/bin/netlab lab/bin/l2probe lab/bin/httpprobe lab/nodes/pod-runner; do mypy $$script; done
	ansible-lint --profile production

# The engine as one file (scripts/build_engine.py): dist/onprem-lb-VERSION.pyz, and a copy in the
# lb_engine role, which installs it on the nodes (and so ships in the collection tarball).
ENGINE      := $(CURDIR)/dist/onprem-lb-$(VERSION).pyz
ENGINE_ROLE := $(CURDIR)/roles/lb_engine/files/onprem-lb.pyz
dist: $(ENGINE_ROLE)
$(ENGINE_ROLE): $(VENV)/.installed requirements-engine.txt scripts/build_engine.py $(shell find src/onprem_lb -name '*.py') plugins/module_utils/ipam.py
	$(VENV)/bin/python scripts/build_engine.py $(ENGINE)
	mkdir -p $(dir $@)
	cp $(ENGINE) $@

build: venv dist
	mkdir -p $(dir $(TARBALL))
	ansible-galaxy collection build --force --output-path $(dir $(TARBALL)) .

# ansible-test needs the collection at .../ansible_collections/onprem/ingress: sanity runs on
# the built tarball installed there, i.e. on exactly what Galaxy users get.
# ansible-test gets its own virtualenv: its pinned linters (pylint, yamllint, ...) must not mix
# with ours, and its --venv mode needs a download host this network does not reach.
SANITY_VENV := $(CURDIR)/.cache/sanity-venv
$(SANITY_VENV)/.installed: requirements-dev.txt scripts/ansible-test-get-pip.py
	test -x $(SANITY_VENV)/bin/python || $(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install -q --disable-pip-version-check \
	  "$$(grep -E '^ansible-core==' requirements-dev.txt)" \
	  "$$(grep -E '^netaddr==' requirements.txt)" "$$(grep -E '^kubernetes==' requirements.txt)"
	pipver=$$($(SANITY_VENV)/bin/python -c 'import re, ansible_test._internal.python_requirements as m, inspect; \
	  print(re.search(r"pip=.([0-9.]+).", inspect.getsource(m.get_venv_packages)).group(1))') && \
	  mkdir -p $(HOME)/.ansible/test/cache && \
	  cp scripts/ansible-test-get-pip.py $(HOME)/.ansible/test/cache/get_pip_$${pipver//./_}.py
	touch $@

sanity: build $(SANITY_VENV)/.installed
	rm -rf $(SANITY_ROOT)
	ansible-galaxy collection install --force --no-deps -p $(SANITY_ROOT) $(TARBALL)
	cd $(SANITY_ROOT)/ansible_collections/onprem/ingress && \
	  PATH=$(SANITY_VENV)/bin:$$PATH ansible-test sanity --local --requirements --python 3.11 --color no

pytest: venv collection-link controlplane dist
	pytest tests

pytest-untimed: venv collection-link controlplane dist
	pytest -m "not timing" tests

pytest-timing: venv collection-link controlplane dist
	pytest -m timing tests

# Molecule scenarios of the host roles (extensions/molecule/<role>): podman nodes running systemd
# on internal podman networks, image built once into .cache/images/. The scenarios run side by
# side (own nodes, networks, control plane); logs in .cache/molecule-logs/, shown on failure.
MOLECULE_SCENARIOS := site sysctl host_network kube_proxy
molecule: host-deps venv collection-link controlplane dist
	export CONTAINERS_CONF=$(CURDIR)/lab/nodes/containers.conf && lab/nodes/build-image.sh >/dev/null
	mkdir -p .cache/molecule-logs; export CONTAINERS_CONF=$(CURDIR)/lab/nodes/containers.conf; pids=(); \
	for s in $(MOLECULE_SCENARIOS); do molecule test -s $$s >.cache/molecule-logs/$$s.log 2>&1 & pids+=($$!); done; \
	failed=; i=0; for s in $(MOLECULE_SCENARIOS); do wait $${pids[$$i]} || failed="$$failed $$s"; i=$$((i+1)); done; \
	for s in $$failed; do echo "== $$s"; grep -v '^\s*$$' .cache/molecule-logs/$$s.log | tail -n 60; done; \
	if [ -n "$$failed" ]; then echo "molecule: failed:$$failed (logs in .cache/molecule-logs/)"; exit 1; fi; \
	echo "molecule: $(MOLECULE_SCENARIOS) passed"

# The local lab (lab/bin/lab): control plane, kwok, three podman nodes with kube-proxy and real
# web servers as Pods, a client; then playbooks/site.yml on inventories/lab and the seeds' demo.
# It shares its node names and network with the molecule scenario `site`: `make test` replaces it.
lab: host-deps venv controlplane collection-link dist
	lab/bin/lab up

lab-down:
	lab/bin/lab down

clean:
	-lab/bin/lab down
	rm -rf .cache/build .cache/sanity .cache/collections .mypy_cache .pytest_cache .ruff_cache dist $(ENGINE_ROLE)
