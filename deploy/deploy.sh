#!/usr/bin/env bash
# Deploys mongo-lake-ingest to Azure end to end: the resources (deploy/azuredeploy.json),
# the handler built for the Functions Linux workers, published as a zip; then prints the
# values the Atlas side needs and sends one signed sample event to the deployed URL.
#
#   deploy/deploy.sh <resource group> <region> [more `az deployment group create` arguments]
#   e.g. deploy/deploy.sh lake-rg westeurope --parameters planSku=EP1 alertEmail=ops@example.com
#
# Needs: az (logged in: `az login`), Rust, cargo-zigbuild with Zig (`pip install ziglang
# cargo-zigbuild`), python3, openssl, curl. Run again to update: the signing secret Atlas
# already holds is kept. See deploy/README.md.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
group=$1
region=$2
shift 2
cd "$(dirname "$0")/.."

deployment=mongo-lake-ingest
secret_name=ingest-hmac-secret
target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-target}

for tool in az cargo cargo-zigbuild python3 openssl curl; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is not installed (see the header of $0)" >&2; exit 2; }
done

output() {
  az deployment group show --resource-group "$group" --name "$deployment" \
    --query "properties.outputs.$1.value" --output tsv
}

echo "== resource group $group ($region)"
az group create --name "$group" --location "$region" --output none

# A redeploy keeps the secret Atlas already signs with; a first deploy generates one. The
# check reads the secret's metadata through Azure Resource Manager (never its value).
parameters=()
vault=$(output keyVaultName 2>/dev/null || true)
if [ -n "$vault" ] && az resource show --resource-group "$group" --namespace Microsoft.KeyVault \
  --parent "vaults/$vault" --resource-type secrets --name "$secret_name" --output none 2>/dev/null; then
  parameters+=(writeIngestHmacSecret=false)
fi
# Whoever deploys may read the signing secret, to give it to Atlas (not for service principals).
reader=$(az ad signed-in-user show --query id --output tsv 2>/dev/null || true)
if [ -n "$reader" ]; then
  parameters+=("secretReaderPrincipalId=$reader")
fi

echo "== resources (deploy/azuredeploy.json)"
az deployment group create --resource-group "$group" --name "$deployment" \
  --template-file deploy/azuredeploy.json \
  ${parameters[@]+--parameters "${parameters[@]}"} "$@" --output none
app=$(output functionAppName)
url=$(output ingestUrl)
vault=$(output keyVaultName)

echo "== build (glibc 2.31, as the README's \"Build the handler\")"
cargo zigbuild --release --target "$target.2.31"

echo "== package and publish to $app"
package=$(mktemp -d)
trap 'rm -rf "$package"' EXIT
cp host.json "$package/app/"
for function in ingest/function.json health/function.json compact/function.json mirror/function.json; do
  mkdir -p "$package/app/$(dirname "$function")"
  cp "$function" "$package/app/$function"
done
cp "$target_dir/$target/release/handler" "$package/app/handler"
chmod 755 "$package/app/handler"
# Python's zipfile keeps the Unix mode, so the handler stays executable on the worker.
(cd "$package/app" && python3 -m zipfile -c ../package.zip host.json handler ingest health compact mirror)
az functionapp deployment source config-zip --resource-group "$group" --name "$app" \
  --src "$package/package.zip" --output none

echo "== the function key (the host lists the function once the package is running)"
key=""
for _ in $(seq 1 20); do
  key=$(az functionapp function keys list --resource-group "$group" --name "$app" \
    --function-name ingest --query default --output tsv 2>/dev/null || true)
  [ -n "$key" ] && break
  sleep 15
done
[ -n "$key" ] || { echo "deploy.sh: no key for the ingest function yet; run: $(output functionKeyCommand)" >&2; exit 1; }

secret=""
for _ in $(seq 1 20); do # a new role assignment takes a few minutes to apply
  secret=$(az keyvault secret show --vault-name "$vault" --name "$secret_name" \
    --query value --output tsv 2>/dev/null || true)
  [ -n "$secret" ] && break
  sleep 15
done
[ -n "$secret" ] || { echo "deploy.sh: cannot read the signing secret; see deploy/README.md, \"The signing secret\"" >&2; exit 1; }

cat <<EOF

== Atlas values (README, "Values and secrets")
lakeIngestUrl            $url
lakeFunctionKeySecret    $key
lakeSigningSecretSecret  $secret

EOF

echo "== smoke test: one signed sample event (samples/insert.json) to $url"
status=""
for _ in $(seq 1 20); do
  t=$(date +%s)
  signature=$({ printf '%s.' "$t"; cat samples/insert.json; } | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
  status=$(curl -sS -o /dev/stderr -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "x-functions-key: $key" -H "X-Ingest-Signature: t=$t,v1=$signature" \
    --data-binary @samples/insert.json "$url" || true)
  echo
  [ "$status" = 200 ] && break
  sleep 15
done
if [ "$status" != 200 ]; then
  echo "deploy.sh: the smoke test got HTTP $status; see deploy/README.md, \"When the smoke test fails\"" >&2
  exit 1
fi
echo "== done: change events sent to $url land in $(output lakeStorageAccountName)"
