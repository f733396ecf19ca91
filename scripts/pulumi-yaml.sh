#!/usr/bin/env bash
# scripts/pulumi-yaml.sh: make sure a real `pulumi-language-yaml` (the language host that runs
# Pulumi YAML programs) exists, and print (as the LAST line of stdout) an absolute directory
# holding it. Progress and errors go to stderr.
#
#   yaml_dir="$(bash scripts/pulumi-yaml.sh | tail -n1)"
#   export PATH="$yaml_dir:$PATH"
#
# 1. If `pulumi-language-yaml` is on PATH, its directory is printed and nothing is built.
# 2. Else it is built with Go from the Go module proxy into
#    ${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}/pulumi-yaml/<version>/bin
#    (reused when the binary is already there; built in a temp dir, then renamed), the way
#    scripts/pulumi-cli.sh builds the CLI.
#
# Pins (checked 2026-11-25):
# - PULUMI_YAML_VERSION, default v1.25.0: github.com/pulumi/pulumi-yaml as the proxy serves it.
#   Its go.mod requires pulumi pkg/v3 and sdk/v3 v3.206.0 and has no replace directives, so
#   the wrapper module (pulumi-yaml's main package can't be the main module of a `go build`
#   elsewhere) requires pulumi-yaml alone and gets exactly the build list pulumi-yaml's own
#   release was built with: no replace is needed. Raising pkg/v3 to the CLI's v3.274.1 does NOT
#   compile (pkg/pulumiyaml/packages.go calls schema.NewPluginLoader and
#   plugin.NewContextWithRoot with the signatures of v3.206.0). A language host built on an
#   older sdk/v3 talks to a newer engine as released hosts do: the gRPC protocol only grows.
# - The version is set at link time (github.com/pulumi/pulumi-yaml/pkg/version.Version), or the
#   host reports an empty version to the engine.
# - The build runs at the lowest priority on one core (nice -n 19, GOMAXPROCS=1, -p 1) unless
#   PULUMI_YAML_BUILD_JOBS says otherwise: it shares the machine with CI runs.
set -euo pipefail

YAML_VERSION="${PULUMI_YAML_VERSION:-v1.25.0}"
YAML_VERSION="v${YAML_VERSION#v}"
JOBS="${PULUMI_YAML_BUILD_JOBS:-1}"
CACHE_ROOT="${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}"
YAML_ROOT="$CACHE_ROOT/pulumi-yaml"
BIN_DIR="$YAML_ROOT/$YAML_VERSION/bin"
YAML_MODULE="github.com/pulumi/pulumi-yaml"

LOG_NAME=pulumi-yaml
# shellcheck source=scripts/go-build-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"
case "$JOBS" in ''|*[!0-9]*|0) die "PULUMI_YAML_BUILD_JOBS must be a whole number of at least 1, not '$JOBS'" ;; esac

# ---- 1. Use what is on PATH ------------------------------------------------------------
if on_path="$(command -v pulumi-language-yaml 2>/dev/null)" && [ -x "$on_path" ]; then
  log "using pulumi-language-yaml from PATH ($on_path)"
  abs_dir "$(dirname "$on_path")"
  exit 0
fi

# ---- 2. Reuse a finished build -----------------------------------------------------------
built() { [ -x "$BIN_DIR/pulumi-language-yaml" ]; }
if built; then
  log "using cached build $BIN_DIR"
  abs_dir "$BIN_DIR"
  exit 0
fi

# ---- 3. Build ------------------------------------------------------------------------------
if ! begin_go_build "$YAML_ROOT" "$YAML_VERSION" built; then
  log "using build $BIN_DIR (finished while waiting)"
  abs_dir "$BIN_DIR"
  exit 0
fi
MOD_DIR="$BUILD_DIR/mod"
OUT_DIR="$BUILD_DIR/bin"
mkdir -p "$MOD_DIR" "$OUT_DIR"
export GOMAXPROCS="$JOBS"

# The Go the wrapper needs: the highest `go` line of pulumi-yaml's go.mod and of the pkg/v3 it requires.
yaml_mod_file="$(go_mod_file "$YAML_MODULE@$YAML_VERSION")"
[ -f "$yaml_mod_file" ] || die "could not download $YAML_MODULE@$YAML_VERSION from the Go module proxy"
pkg_version="$(sed -n 's/^[[:space:]]*github.com\/pulumi\/pulumi\/pkg\/v3 \(v[^ ]*\).*/\1/p' "$yaml_mod_file" | head -n1)"
[ -n "$pkg_version" ] || die "$YAML_MODULE@$YAML_VERSION's go.mod names no github.com/pulumi/pulumi/pkg/v3"
pkg_mod_file="$(go_mod_file "github.com/pulumi/pulumi/pkg/v3@$pkg_version")"
[ -f "$pkg_mod_file" ] || die "could not download github.com/pulumi/pulumi/pkg/v3@$pkg_version from the Go module proxy"
need_go="$(printf '%s\n%s\n' "$(go_line "$yaml_mod_file")" "$(go_line "$pkg_mod_file")" | sort -V | tail -n1)"
use_go_at_least "$need_go" "$YAML_MODULE $YAML_VERSION"

printf 'module pulumiconntrack.local/pulumiyaml\n\ngo %s\n\nrequire %s %s\n' "${need_go:-1.24}" "$YAML_MODULE" "$YAML_VERSION" >"$MOD_DIR/go.mod"

LDFLAGS="-X $YAML_MODULE/pkg/version.Version=$YAML_VERSION"
start_seconds=$SECONDS
log "building pulumi-language-yaml $YAML_VERSION (pulumi pkg/v3 $pkg_version) with $(go version | cut -d' ' -f3), $JOBS job(s), in $BUILD_DIR"
(cd "$MOD_DIR" && nice -n 19 go build -p "$JOBS" -trimpath -tags osusergo,grpcnotrace -ldflags "$LDFLAGS" \
  -o "$OUT_DIR/pulumi-language-yaml" "$YAML_MODULE/cmd/pulumi-language-yaml")

# ---- 4. Verify, then publish atomically -------------------------------------------------------
# The host serves on a free port and prints it; with no engine address it serves until stopped.
"$OUT_DIR/pulumi-language-yaml" >"$BUILD_DIR/port" 2>/dev/null &
host_pid=$!
for _ in $(seq 1 100); do
  [ -s "$BUILD_DIR/port" ] && break
  sleep 0.2
done
kill "$host_pid" 2>/dev/null || true
wait "$host_pid" 2>/dev/null || true
port_line="$(head -n1 "$BUILD_DIR/port")"
case "$port_line" in
  ''|*[!0-9]*) die "built pulumi-language-yaml did not print its port (got '$port_line')" ;;
esac

printf 'pulumi-language-yaml %s\npulumi pkg/v3: %s\ngo: %s\nbuilt: %s\n' \
  "$YAML_VERSION" "$pkg_version" "$(go version)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OUT_DIR/BUILD-INFO"

mkdir -p "$(dirname "$BIN_DIR")"
if ! mv -T "$OUT_DIR" "$BIN_DIR" 2>/dev/null; then
  built || die "could not move the build to $BIN_DIR (it exists but is incomplete: delete it and rerun)"
  log "another build already published $BIN_DIR; using it"
fi

elapsed=$((SECONDS - start_seconds))
log "built pulumi-language-yaml $YAML_VERSION in $((elapsed / 60))m$((elapsed % 60))s"
abs_dir "$BIN_DIR"
