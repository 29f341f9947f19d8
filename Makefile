# Two commands do all the setup: `make run` serves the API locally, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp also hashes the command line's own project file (cli/, installed editable): its
# dependencies or entry point changing installs it again; its code needs no reinstall.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt cli/pyproject.toml | cksum | cut -d' ' -f1)
PORT ?= 10000
PYTEST_ARGS ?=
# The local runtime: BACKEND=local (a state file, kept across restarts) or aws (the AWS adapters on
# moto's server, or on AWS_ENDPOINT_URL); STATE_FILE is the local backend's file.
BACKEND ?= local
STATE_FILE ?= .fastlane/local.db

.PHONY: install run reset test clean faults

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt cli/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP) sandbox
	PORT=$(PORT) $(BIN)/python -m infra.local.runtime --backend $(BACKEND) --state $(STATE_FILE)

# Forget the local backend's state (tasks, jobs, executions, queues, output): the next `make run`
# starts empty. Refused while a runtime uses the file.
reset:
	@if [ -e "$(STATE_FILE).lock" ] && command -v flock >/dev/null && ! flock -n "$(STATE_FILE).lock" true; then \
		echo "make reset: a local runtime uses $(STATE_FILE); stop it first"; exit 1; fi
	rm -f "$(STATE_FILE)" "$(STATE_FILE)-wal" "$(STATE_FILE)-shm" "$(STATE_FILE).lock" "$(STATE_FILE).writer"

test: $(STAMP) browser localstack sandbox lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The fault harness (tests/faults, docs in its modules): randomized schedules of the real services
# in virtual time, under injected faults, then the invariants, on BACKEND=local (the SQLite backend,
# the default) or aws (the AWS adapters on moto in process, each handler under its function's IAM
# role). `make test` runs 1,000 local schedules and 60 aws ones; `make faults` runs SCHEDULES of
# them (3000 local, 100 aws by default) from FIRST_SEED, and `make faults BACKEND=<backend>
# SEED=<n>` replays the one schedule a report names, with its whole trace.
SCHEDULES ?=
FIRST_SEED ?= 1
SEED ?=
faults: $(STAMP)
	$(BIN)/python -m tests.faults --backend $(BACKEND) \
		$(if $(SEED),--seed $(SEED),$(if $(SCHEDULES),--schedules $(SCHEDULES)) --first-seed $(FIRST_SEED))

# bubblewrap (Debian's package) for the local runtime's sandbox of jobs and its tests. Idempotent;
# where it cannot be installed (not root, no apt) jobs run as plain processes and the runtime says so.
.PHONY: sandbox
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null; } \
		|| echo "make: bubblewrap could not be installed; local jobs will run without a sandbox"

# Types (mypy, strict on chalicelib) and lint (ruff), configured in pyproject.toml.
.PHONY: lint
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Headless Chromium for the tests of the live log page and the job browser (Debian's package).
# Idempotent; where it cannot be installed (not root, no apt) those tests are skipped and say why.
.PHONY: browser
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
		|| echo "make: chromium could not be installed; the browser tests will be skipped"

# LocalStack community for tests/localstack: host mode, in its own Python 3.11 environment (its
# pins clash with the app's). Idempotent (a stamp per requirements-localstack.txt); where it cannot
# be installed, a warning, and those tests skip and say why (docs/deploy.md#the-localstack-tier).
LOCALSTACK_VENV := .venv-localstack
LOCALSTACK_PYTHON ?= python3.11
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed-$(shell cat requirements-localstack.txt | cksum | cut -d' ' -f1)

.PHONY: localstack
localstack:
	@$(MAKE) --no-print-directory $(LOCALSTACK_STAMP) \
		|| echo "make: the LocalStack environment could not be installed; the LocalStack tests will be skipped"

$(LOCALSTACK_STAMP): requirements-localstack.txt
	test -x $(LOCALSTACK_VENV)/bin/python || $(LOCALSTACK_PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-localstack.txt
	rm -f $(LOCALSTACK_VENV)/.installed-*
	touch $@

# Deploying to AWS (docs/deploy.md). `make package` builds build/sam.yaml and build/deployment.zip
# (chalice package merged with infra/fastlane.yaml, then cfn-lint) without AWS credentials;
# `make deploy DEPLOY_BUCKET=<bucket> PARAMETERS='Subnets=... SecurityGroups=...'` uploads the code
# and creates or updates the stack fastlane-<STAGE>, with the AWS CLI in its own environment.
STAGE ?= dev
API_AUTH ?= iam
STACK ?= fastlane-$(STAGE)
DEPLOY_BUCKET ?=
PARAMETERS ?=
DEPLOY_VENV := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-$(shell cat requirements-deploy.txt | cksum | cut -d' ' -f1)
AWS_CLI := $(DEPLOY_VENV)/bin/aws

.PHONY: package deploy
package: $(STAMP)
	rm -rf build
	$(BIN)/python -m infra.package --stage $(STAGE) --api-auth $(API_AUTH) --lint build

deploy: package $(DEPLOY_STAMP)
	@test -n "$(DEPLOY_BUCKET)" || { echo "make deploy: set DEPLOY_BUCKET, an S3 bucket for the code (docs/deploy.md)"; exit 2; }
	$(AWS_CLI) cloudformation package --template-file build/sam.yaml --s3-bucket $(DEPLOY_BUCKET) \
		--s3-prefix $(STACK) --output-template-file build/packaged.yaml
	$(AWS_CLI) cloudformation deploy --template-file build/packaged.yaml --stack-name $(STACK) \
		--s3-bucket $(DEPLOY_BUCKET) --s3-prefix $(STACK) --capabilities CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
		--no-fail-on-empty-changeset --tags service=fastlane stage=$(STAGE) \
		--parameter-overrides Stage=$(STAGE) ApiAuth=$(API_AUTH) $(PARAMETERS)
	$(AWS_CLI) cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Outputs" --output table

$(DEPLOY_STAMP): requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-deploy.txt
	rm -f $(DEPLOY_VENV)/.installed-*
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache

# Benchmarks against the local runtime, next to an RQ reference: one table, and JSON in
# bench/results/ (docs/performance.md). Not part of `make test`. BENCH_ARGS=--quick for a short try.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } || echo "bench: no redis-server; the RQ reference will be n/a"
	$(BIN)/python -m bench $(BENCH_ARGS)
