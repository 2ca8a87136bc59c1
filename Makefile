# Aurora PostgreSQL -> PlanetScale for Postgres through AWS DMS.
# `make demo` and `make test` work on a fresh machine: both first run the idempotent install (make deps).

SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools
# Lambda crates that exist in this tree (each one binary, one zip).
LAMBDAS := $(filter $(notdir $(wildcard crates/*)),notify connectivity-check sg-autofix premigration-assessment start-task poll-progress stack-cleanup)
CARGO_LAMBDA := PATH="$(TOOLS)/lambda/bin:$$PATH" $(TOOLS)/lambda/bin/cargo-lambda lambda
AWS := $(TOOLS)/awscli/bin/aws
# The source template and the console-ready one `make package` writes.
TEMPLATE := cloudformation/aurora-to-ps-dms.yaml
PACKAGED := packaged.yaml

.PHONY: help deps lab-up lab-down lab-status build package upload-artifacts deploy lint test test-unit bench demo clean

help:
	@echo "make demo       the workflow against local PostgreSQL and the local AWS stand-ins"
	@echo "make test       formatting, lints, static checks and every test (brings the lab up)"
	@echo "make lab-up     start the lab (PostgreSQL source/target, moto); make lab-down stops it"
	@echo "make build      release arm64 Lambda zips (target/lambda/<name>/bootstrap.zip)"
	@echo "make package ARTIFACT_BUCKET=...   packaged.yaml for the CloudFormation console"
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
	$(CARGO_LAMBDA) build --release --arm64 --output-format zip --lambda-dir target/lambda $(addprefix -p ,$(LAMBDAS))

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
	cargo run -q -p integration-tests --bin bench_cutover

# The Lambdas' and dms-local's own logs go to target/demo/services.log, so the terminal shows the story.
demo: lab-up
	cargo build --workspace --bins
	@mkdir -p target/demo
	@cargo run -q -p integration-tests --bin demo 2> target/demo/services.log || { status=$$?; \
	  echo "The Lambdas' and dms-local's log: target/demo/services.log; its last lines:"; \
	  tail -n 30 target/demo/services.log; exit $$status; }

clean: lab-down
	cargo clean
	rm -rf $(TOOLS) packaged.yaml
