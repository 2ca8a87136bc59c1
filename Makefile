# Aurora PostgreSQL -> PlanetScale for Postgres through AWS DMS.
# `make demo` and `make test` work on a fresh machine: both first run the idempotent install (make deps).

SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools
# Lambda crates that exist in this tree (each one binary, one zip).
LAMBDAS := $(filter $(notdir $(wildcard crates/*)),notify connectivity-check sg-autofix premigration-assessment source-checks start-task poll-progress stack-cleanup)
CARGO_LAMBDA := PATH="$(TOOLS)/lambda/bin:$$PATH" $(TOOLS)/lambda/bin/cargo-lambda lambda
AWS := $(TOOLS)/awscli/bin/aws
# The source template and the console-ready one `make package` writes.
TEMPLATE := cloudformation/aurora-to-ps-dms.yaml
PACKAGED := packaged.yaml
# `make release VERSION=v1.2.3` writes DIST for a GitHub release of GITHUB_REPOSITORY (owner/name: set by
# GitHub Actions, else read from the git remote `origin`); RELEASE_URL is the release template's default
# ReleaseLocation: files are read from $(RELEASE_URL)/$(VERSION)/<file> (docs/template.md, "The release template").
LAMBDA_DIR := target/lambda
DIST := dist
GITHUB_REPOSITORY ?= $(shell git remote get-url origin 2>/dev/null | sed -nE 's#^(https://github\.com/|git@github\.com:)([^/]+/[^/]+)$$#\2#p' | sed 's#\.git$$##')
RELEASE_URL ?= https://github.com/$(GITHUB_REPOSITORY)/releases/download

.PHONY: help deps lab-up lab-down lab-status build package upload-artifacts release release-vars release-files deploy lint test test-unit bench demo clean

help:
	@echo "make demo       the workflow against local PostgreSQL and the local AWS stand-ins"
	@echo "make test       formatting, lints, static checks and every test (brings the lab up)"
	@echo "make lab-up     start the lab (PostgreSQL source/target, moto); make lab-down stops it"
	@echo "make build      release arm64 Lambda zips (target/lambda/<name>/bootstrap.zip)"
	@echo "make package ARTIFACT_BUCKET=...   packaged.yaml for the CloudFormation console"
	@echo "make release VERSION=v1.2.3   dist/: zips, ASL, SHA256SUMS and the one-file console template"
	@echo "make deploy STACK=... PARAMS='K=V ...' ARTIFACT_BUCKET=..."
	@echo "make bench      benchmarks, each side by side with its peer"

deps:
	@bash scripts/deps.sh

lab-up: deps
	@bash scripts/lab.sh up

lab-down:
	@bash scripts/lab.sh down

lab-status:
	@bash scripts/lab.sh status

build: deps
	@rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	$(CARGO_LAMBDA) build --release --arm64 --output-format zip --lambda-dir $(LAMBDA_DIR) $(addprefix -p ,$(LAMBDAS))

package: build
	@$(MAKE) --no-print-directory upload-artifacts

# `aws cloudformation package` on zips already built: uploads each Lambda zip and the ASL that TEMPLATE
# names (paths relative to it) to ARTIFACT_BUCKET and writes PACKAGED with their s3:// locations. The
# packaging test (tests/tests/packaging.rs) runs it on a temporary copy holding debug zips.
upload-artifacts:
	@test -n "$(ARTIFACT_BUCKET)" || { echo "make package: set ARTIFACT_BUCKET=<an S3 bucket in the stack's region>" >&2; exit 2; }
	$(AWS) cloudformation package --template-file "$(TEMPLATE)" \
	  --s3-bucket "$(ARTIFACT_BUCKET)" --output-template-file "$(PACKAGED)"
	@echo "$(PACKAGED) is ready: upload it in the CloudFormation console (Create stack > Upload a template file)."

# The variables are checked before the long arm64 build.
release: release-vars build
	@$(MAKE) --no-print-directory release-files

release-vars:
	@test -n "$(VERSION)" || { echo "make release: set VERSION=<tag, e.g. v1.2.3>" >&2; exit 2; }
	@case "$(RELEASE_URL)" in https://github.com//*) echo "make release: set GITHUB_REPOSITORY=<owner>/<name> (no github.com remote origin) or RELEASE_URL=<base URL: files at RELEASE_URL/VERSION/file>" >&2; exit 2;; esac

# DIST from the zips already in LAMBDA_DIR (tests/tests/release.rs runs it on small stand-in zips), then
# the release template through the same static checks as the source template.
release-files: release-vars
	python3 scripts/release.py --version "$(VERSION)" --release-url "$(RELEASE_URL)" \
	  --lambdas "$(LAMBDAS)" --lambda-dir "$(LAMBDA_DIR)" --out "$(DIST)"
	bash scripts/lint-cfn.sh "$(DIST)/aurora-to-ps-dms-$(VERSION).yaml"

deploy: package
	@test -n "$(STACK)" || { echo "make deploy: set STACK=<stack name>" >&2; exit 2; }
	$(AWS) cloudformation deploy --template-file "$(PACKAGED)" --stack-name "$(STACK)" \
	  --s3-bucket "$(ARTIFACT_BUCKET)" --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM \
	  --parameter-overrides $(PARAMS)

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	ASL_REQUIRE_MOTO=1 bash scripts/check-asl.sh
	bash scripts/lint-cfn.sh
	bash scripts/actionlint.sh

# Tests run debug x86_64 binaries (the release arm64 zips are `make build`).
test: lab-up lint
	cargo build --workspace --bins
	@if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace --no-fail-fast; else cargo test --workspace --no-fail-fast; fi

# Each row is measured side by side with its peer in the same run; see each bench binary's header.
bench: lab-up
	cargo build --release -p notify
	cargo build -q -p integration-tests --bins
	cargo run -q -p integration-tests --bin bench_notify
	cargo build --release -p dms-migrate
	cargo run -q -p integration-tests --bin bench_preflight
	cargo run -q -p integration-tests --bin bench_sequences
	cargo run -q -p integration-tests --bin bench_verify
	cargo build --workspace --bins
	cargo run -q -p integration-tests --bin bench_full_load
	cargo run -q -p integration-tests --bin bench_cutover
	cargo run -q -p integration-tests --bin bench_rollback

# The Lambdas' and dms-local's own logs go to target/demo/services.log, so the terminal shows the story.
demo: lab-up
	cargo build --workspace --bins
	@mkdir -p target/demo
	@cargo run -q -p integration-tests --bin demo 2> target/demo/services.log || { status=$$?; \
	  echo "The Lambdas' and dms-local's log: target/demo/services.log; its last lines:"; \
	  tail -n 30 target/demo/services.log; exit $$status; }

clean: lab-down
	cargo clean
	rm -rf $(TOOLS) packaged.yaml $(DIST)
