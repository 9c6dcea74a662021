#!/usr/bin/env bash
# End-to-end suites with real MCP clients, all on loopback:
#   - the official TypeScript SDK client over stdio and streamable HTTP
#     (test/sdk-*.test.mjs, test/http-security.test.mjs, test/shared-db.test.mjs)
#   - the MCP Inspector CLI calling check_tls (test/inspector.test.mjs)
#   - the official conformance suite in server mode (test/conformance.test.mjs,
#     baseline in conformance-baseline.yml)
#   - the SDK client's OAuth support against `serve --auth-issuer` and a test
#     authorization server (test/oauth.test.mjs)
# Builds tlswatch and the TLS lab into a temp dir, installs the pinned npm
# packages with `npm ci`, runs everything with `node --test` and exits non-zero
# on any failure. Bounded in time; meant for .ci/run.
#
# Environment:
#   E2E_SKIP_NPM_CI=1   reuse e2e/node_modules when present (local iteration)
#   E2E_TESTS="test/x.test.mjs ..."   run only these files
#   E2E_DEBUG=1         print tlswatch's stderr after each SDK suite
#   E2E_BUDGET=290      seconds the whole script may take
set -euo pipefail

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$E2E_DIR/.." && pwd)"
BIN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tlswatch-e2e-bin.XXXXXX")"
trap 'rm -rf "$BIN_DIR"' EXIT

start=$(date +%s)
step() { echo "== e2e: $* ($(( $(date +%s) - start ))s)"; }

step "building tlswatch, the TLS lab and the test authorization server"
(
  cd "$REPO_DIR"
  timeout 150 go build -o "$BIN_DIR/tlswatch" ./cmd/tlswatch
  timeout 60 go build -o "$BIN_DIR/labserver" ./e2e/labserver
  timeout 60 go build -o "$BIN_DIR/authserver" ./e2e/authserver
)

cd "$E2E_DIR"
if [[ "${E2E_SKIP_NPM_CI:-}" == 1 && -d node_modules/@modelcontextprotocol/sdk ]]; then
  step "reusing node_modules"
else
  step "npm ci"
  timeout 120 npm ci --no-audit --no-fund --loglevel=error
fi

export TLSWATCH_BIN="$BIN_DIR/tlswatch"
export LABSERVER_BIN="$BIN_DIR/labserver"
export AUTHSERVER_BIN="$BIN_DIR/authserver"
export npm_config_update_notifier=false

# shellcheck disable=SC2206
tests=(${E2E_TESTS:-test/*.test.mjs})
step "node --test ${tests[*]}"
rc=0
# Whatever building and installing took, the whole script stays within
# E2E_BUDGET seconds (default 290) unless that leaves the tests under 90 s.
budget=$(( ${E2E_BUDGET:-290} - ($(date +%s) - start) ))
if (( budget < 90 )); then budget=90; fi
timeout --kill-after=10 "$budget" node --test --test-concurrency=1 --test-reporter=spec "${tests[@]}" || rc=$?
if [[ $rc == 124 || $rc == 137 ]]; then
  echo "e2e: node --test exceeded its time limit"
fi
step "done, exit $rc"
exit "$rc"
