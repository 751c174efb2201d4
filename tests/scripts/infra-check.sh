#!/usr/bin/env bash
# make infra-check: the offline checks of infra/ (no cloud account, no registry).
#   1. terraform fmt -check over infra/ (AWS and GCP)
#   2. terraform init + validate of infra/aws and its example, with the machine's provider mirror
#   3. checkov over infra/ (AWS and GCP), installed into .venv/ when missing, and a reference
#      check (tests/infra/check_references.py) standing in for validate on GCP
#   4. a schema check of every resource/data/provider block (tests/infra/check_schema.py): GCP
#      against the Google provider's schema from the npm package @cdktf/provider-google (pinned,
#      fetched once into .tmp/), AWS against `terraform providers schema -json`; first a self-test
#      on tests/infra/fixtures/schema, which must fail with exactly its expected findings
#   5. terraform apply of infra/aws/examples/complete to a moto server, assertions, destroy
# The Google provider cannot be installed offline: GCP gets steps 1, 3 and 4 only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
work=.tmp/infra-check
mkdir -p "$work"

step() { printf '\ninfra-check: [%ss] %s\n' "$SECONDS" "$*" >&2; }
command -v terraform >/dev/null || { echo "infra-check: terraform not found (https://developer.hashicorp.com/terraform/install)" >&2; exit 1; }

# The image's TF_CLI_CONFIG_FILE points at a file that does not exist; use our own, naming the
# machine's provider mirror (the folder holding registry.terraform.io/hashicorp/aws) when there is
# one, else the public registry.
mirror=${TAPLINE_TF_MIRROR:-}
if [ -z "$mirror" ]; then
  found=$({ find / -maxdepth 4 -path /proc -prune -o -type d -name registry.terraform.io -print 2>/dev/null || true; } \
    | while read -r dir; do if [ -d "$dir/hashicorp/aws" ]; then echo "$dir"; fi; done | head -n 1)
  if [ -n "$found" ]; then mirror=$(dirname "$found"); fi
fi
if [ -n "$mirror" ]; then
  cat >"$work/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/hashicorp/aws"]
  }
}
disable_checkpoint = true
RC
else
  echo "infra-check: no local provider mirror found, terraform init uses the registry" >&2
  echo 'disable_checkpoint = true' >"$work/terraformrc"
fi
export TF_CLI_CONFIG_FILE="$root/$work/terraformrc" TF_IN_AUTOMATION=1

step "terraform fmt -check -recursive infra"
terraform fmt -check -recursive infra

for dir in infra/aws infra/aws/examples/complete; do
  step "terraform validate $dir"
  data="$root/$work/validate/${dir//\//_}"
  TF_DATA_DIR="$data" terraform -chdir="$dir" init -input=false -backend=false -no-color >"$work/init.log" 2>&1 \
    || { cat "$work/init.log" >&2; exit 1; }
  TF_DATA_DIR="$data" terraform -chdir="$dir" validate -no-color
done

step "checkov (AWS and GCP)"
if [ ! -x .venv/bin/checkov ]; then
  echo "infra-check: installing checkov into .venv/ (once, about 2 minutes)" >&2
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q "checkov>=3.3,<3.4"
fi
BC_SKIP_MAPPING=TRUE .venv/bin/checkov -d infra --framework terraform --skip-download --compact --quiet

# GCP cannot be validated offline: check its references instead (with checkov's HCL parser).
step "references (GCP and AWS: declared names, indexes, module arguments)"
.venv/bin/python tests/infra/check_references.py infra/gcp infra/gcp/examples/complete infra/aws infra/aws/examples/complete

step "provider schemas (GCP: @cdktf/provider-google jsii, fetched once; AWS: terraform providers schema)"
schemas="$root/$work/schema"
google_schema=$(.venv/bin/python tests/infra/check_schema.py google-schema "$schemas")
aws_schema=$(TF_DATA_DIR="$root/$work/validate/infra_aws" .venv/bin/python tests/infra/check_schema.py terraform-schema infra/aws "$schemas")
check_schema() { .venv/bin/python tests/infra/check_schema.py check --schema "$google_schema" --schema "$aws_schema" "$@"; }

step "schema check self-test: the fixtures' deliberate mistakes are each found"
fixtures=tests/infra/fixtures/schema
if check_schema "$fixtures" >"$work/schema-fixtures.out"; then
  cat "$work/schema-fixtures.out" >&2
  echo "infra-check: the schema check passed on $fixtures, whose every file has a deliberate mistake" >&2
  exit 1
fi
# The findings only: the summary line names the provider versions, which may differ elsewhere.
grep -v '^schema check of ' "$work/schema-fixtures.out" | diff -u "$fixtures/expected.txt" - >&2 \
  || { echo "infra-check: the schema check's findings on $fixtures differ from $fixtures/expected.txt (-expected +found)" >&2; exit 1; }

step "schema check (infra/gcp and infra/aws, with their modules and examples)"
check_schema infra/gcp infra/aws

step "terraform apply of infra/aws/examples/complete to moto, assertions, destroy"
python=python3
"$python" -c 'import boto3' 2>/dev/null || python=.venv/bin/python
tests/scripts/with-moto.sh "$python" tests/infra/check_aws_apply.py
step "done"
