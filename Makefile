# make setup  installs everything on a fresh Debian machine (R and R packages from apt, .venv from
#             pyproject.toml, the R package); fast and idempotent when nothing changed.
# make demo   setup, then runs the seed's ParameterFlow locally.
# make demo-sfn  setup, then ParameterFlow through create -> trigger -> artifact on the offline emulator.
# make image  builds the Batch image from inst/container/Dockerfile (docker or podman), tagged by a hash of
#             its inputs; a no-op when they have not changed (tools/batch_image.py).
# make test   setup, then every pytest and testthat test (the report's tests drive Debian's chromium; the
#             emulator's end-to-end tests build the image first and run their Batch jobs in it;
#             make test-slow: the few tests marked slow).
# make bench  setup, then the benchmarks in bench/.

SHELL := /bin/bash
VENV := .venv
# R_LIB=DIR installs the R package into DIR instead of R's site library, and every R the targets start
# finds it there first: a second checkout (a git worktree) keeps its own package beside the main one's.
R_LIB ?=
ifneq ($(R_LIB),)
export R_LIBS := $(abspath $(R_LIB))$(if $(R_LIBS),:$(R_LIBS))
endif
PYTHON ?= python3
STAMPS := .stamps
APT_PACKAGES := r-base-core r-cran-reticulate r-cran-testthat r-cran-magrittr r-cran-jsonlite \
	r-cran-cli r-cran-processx r-cran-withr r-cran-r6 r-cran-matrix r-cran-rlang
# Not in the Batch image, which installs APT_PACKAGES: the report's browser tests, building the vignette,
# R CMD check --as-cran (qpdf, and devscripts' checkbashisms), the website, lintr, roxygen2, and the Python
# the installation test makes a user's backend environment with.
TEST_APT_PACKAGES := chromium r-cran-knitr r-cran-markdown qpdf devscripts r-cran-pkgdown r-cran-lintr \
	r-cran-roxygen2 python3-venv
R_SOURCES := DESCRIPTION NAMESPACE configure .Rbuildignore $(wildcard R/*.R) $(wildcard man/*.Rd) $(wildcard vignettes/*.Rmd)
PY_SOURCES := $(shell find inst/python -name '*.py' 2>/dev/null)
# What building and running the Batch image needs where Docker does not answer: rootful podman with runc,
# and debootstrap for a base image when no registry can be reached (tools/batch_image.py).
CONTAINER_PACKAGES := podman buildah runc debootstrap uidmap slirp4netns fuse-overlayfs

.PHONY: setup demo demo-sfn image test test-python test-r test-slow bench docs check site lint clean

setup: $(STAMPS)/apt $(STAMPS)/venv $(STAMPS)/rpkg $(STAMPS)/node $(STAMPS)/containers

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(APT_PACKAGES) $(TEST_APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Installing R, R packages, knitr and chromium from Debian"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) \
			apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) $(TEST_APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

$(STAMPS)/venv: pyproject.toml inst/python/pyproject.toml
	@mkdir -p $(STAMPS)
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e './inst/python[emulator]' -e .
	@touch $@

# The R package records the venv's interpreter (see ./configure) so library(metaflow) needs no setting. It is
# built first (R CMD build), which renders the vignette, so vignette("scheduling-flows") finds it.
# R's site library is shared: another checkout may have installed its own copy over this one's since, and
# then this one is installed again.
INSTALLED_PYTHON := $(shell cat "$$($(if $(R_LIB),R_LIBS=$(R_LIBS)) Rscript -e \
	'cat(system.file("venv-python", package = "metaflow"))' 2>/dev/null)" 2>/dev/null)
ifneq ($(INSTALLED_PYTHON),$(CURDIR)/$(VENV)/bin/python)
$(shell rm -f $(STAMPS)/rpkg)
endif
$(STAMPS)/rpkg: $(STAMPS)/apt $(STAMPS)/venv $(R_SOURCES) $(PY_SOURCES)
	@rm -rf $(STAMPS)/build && tools/stage_package.sh $(STAMPS)/build/metaflow
	@cd $(STAMPS)/build && R CMD build --no-manual metaflow >$(CURDIR)/$(STAMPS)/rpkg.log 2>&1 \
		|| { cat $(CURDIR)/$(STAMPS)/rpkg.log; exit 1; }
	@$(if $(R_LIB),mkdir -p $(R_LIB) &&) METAFLOW_R_PYTHON=$(CURDIR)/$(VENV)/bin/python R CMD INSTALL --no-test-load \
		$(if $(R_LIB),-l $(R_LIB)) $(STAMPS)/build/metaflow_*.tar.gz \
		>>$(STAMPS)/rpkg.log 2>&1 || { cat $(STAMPS)/rpkg.log; exit 1; }
	@touch $@

# From npm, into .tools: asl-validator checks the golden state machines beside PyPI's statelint, and
# aws-local-stepfunctions runs them on an interpreter independent of moto's; playwright-core drives
# Debian's chromium for the report's browser tests, which also render the `show --mermaid` text with
# mermaid. Best effort: a machine without Node.js or the npm registry skips those checks (the tests say so).
NPM_TOOLS := asl-validator@4.0.0 aws-local-stepfunctions@3.0.0 playwright-core@1.65.1 mermaid@12.3.0
$(STAMPS)/node: Makefile
	@mkdir -p $(STAMPS)
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix .tools $(NPM_TOOLS) >/dev/null 2>&1 \
			|| echo "npm tools ($(NPM_TOOLS)) could not be installed; their tests will be skipped"; \
	fi
	@touch $@

# Where Docker answers, nothing is installed. Otherwise podman and friends from Debian; if that fails the
# image tests say loudly that they did not run.
$(STAMPS)/containers: Makefile
	@mkdir -p $(STAMPS)
	@if ! docker info >/dev/null 2>&1 && ! dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1; then \
		echo "Installing podman (to build and run the Batch image) from Debian"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) \
			apt-get install -y -qq --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null \
			|| echo "podman could not be installed; the image tests will be skipped (loudly)"; \
	fi
	@touch $@

image: $(STAMPS)/venv $(STAMPS)/containers
	$(VENV)/bin/python tools/batch_image.py

demo: setup
	cd examples && Rscript parameter_flow.R run

demo-sfn: setup
	examples/demo-sfn.sh

# The two suites run side by side, the Python one on a worker per core (idle workers take tests queued
# for busy ones; a module's fixtures, e.g. its emulator, start once per worker that runs its tests);
# each suite's output is shown as it ends.
test: setup
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-python test-r

# R CMD check --as-cran of the built package, offline: what CRAN's incoming checks ask that needs the network
# is left out, and the time check (it asks a web service) is the one note allowed (tests/python/test_package.py).
check: setup
	@rm -rf $(STAMPS)/check && mkdir -p $(STAMPS)/check
	@cd $(STAMPS)/check && _R_CHECK_CRAN_INCOMING_REMOTE_=false METAFLOW_R_PYTHON=$(CURDIR)/$(VENV)/bin/python \
		R CMD check --as-cran --no-manual $(CURDIR)/$(STAMPS)/build/metaflow_*.tar.gz >check.log 2>&1 \
		|| { cat check.log; exit 1; }
	@tail -n 3 $(STAMPS)/check/check.log

test-python:
	$(VENV)/bin/python -m pytest -q -n auto --dist worksteal tests/python

# The tests marked slow (minutes each, e.g. a distributed Map of 3,000 items on the emulator).
test-slow: setup
	$(VENV)/bin/python -m pytest -q --slow -m slow tests/python

test-r:
	NOT_CRAN=true Rscript -e 'testthat::test_dir("tests/testthat", package = "metaflow", load_package = "installed", stop_on_failure = TRUE)'

bench: setup
	Rscript bench/foreach_overhead.R
	$(VENV)/bin/python bench/compile_large.py
	bash bench/compare_metaflow.sh
	bash bench/with_metaflow.sh startup_memory.py
	bash bench/with_metaflow.sh compare_artifacts.py
	$(VENV)/bin/python bench/sfn_scale.py

# The package's website, with pkgdown (Debian's r-cran-pkgdown), into site/ (docs/ holds the project's own
# documents); tests/python/test_site_browser.py checks what Chromium shows of it.
site: setup
	Rscript -e 'pkgdown::build_site(preview = FALSE, install = FALSE, new_process = FALSE)'

# lintr, under the repository's .lintr.
lint: setup
	Rscript -e 'lints <- lintr::lint_package(); print(lints); if (length(lints)) quit(status = 1)'

# Regenerates man/ and NAMESPACE from the roxygen comments (needs Debian's r-cran-roxygen2).
docs:
	Rscript -e 'roxygen2::roxygenise(roclets = c("rd", "namespace"))'

clean:
	rm -rf $(STAMPS) $(VENV) .tools examples/.metaflow
