#!/usr/bin/env bash
# scripts/pulumi-cli.sh: make sure a real `pulumi` CLI and a `pulumi-language-nodejs`
# exist, and print (as the LAST line of stdout) an absolute directory holding both.
# Progress and errors go to stderr.
#
#   bin_dir="$(bash scripts/pulumi-cli.sh | tail -n1)"
#   export PATH="$bin_dir:$PATH"
#
# 1. If `pulumi` on PATH is >= 3.270.0 and `pulumi-language-nodejs` sits in the same
#    directory, that directory is printed and nothing is built.
# 2. Else both are built with Go from the Go module proxy into
#    ${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}/pulumi-cli/<version>/bin
#    (reused when both binaries are already there; built in a temp dir, then renamed).
#
# Build time measured here (2 cores, Go 1.26.8): 6m11s with the module cache warm,
# 7m30s on the first build including module downloads; a cache hit takes ~0.01s.
#
# Pins (checked 2026-11-25):
# - PULUMI_CLI_VERSION, default v3.274.1: the newest github.com/pulumi/pulumi/pkg/v3 the
#   proxy serves here (sdk/v3 is served at v3.274.1 too; pkg/v3 v3.270.0 is refused).
#   pkg/v3 v3.274.1's go.mod: `go 1.26.6` (the machine's Go 1.26.8 is enough) and two
#   replaces: sdk/v3 => ../sdk (replaced here by requiring sdk/v3 at the same version)
#   and github.com/atotto/clipboard => github.com/tgummerer/clipboard (repeated below).
# - Language host: the real one is module
#   github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3, which has no tags,
#   so it only exists as a pseudo-version v3.0.0-20261105124506-<12 hex of the release
#   commit> (20261105124506 = commit time of v3.274.1 from the proxy's sdk/v3 .info).
#   The commit hash of v3.274.1 could NOT be found (the stored GitHub copies and pages
#   searched hold pulumi/pulumi and its Homebrew/Wolfi recipes only up to ~v3.268), and
#   this proxy serves no version of that module that could be checked: @v/list, @latest,
#   branch names and bare hashes are refused, and so were the exact pseudo-versions at
#   the release commits that are known (e.g. v3.248.0 = a88168d865b7, v3.254.0,
#   v3.228.0, v3.214.0; and the v3.136.1-era v3.0.0-20241010194211-2d3b850b6020 that
#   pulumi-docker-build required). So by default this script builds a SMALL STAND-IN
#   language host (Go source in tools/pulumi-language-nodejs-standin, ~250 lines, linked against sdk/v3 at the pinned
#   version) that does what the real host does for `pulumi preview/up/refresh/destroy`
#   of a Node.js program: it resolves @pulumi/pulumi/cmd/run from the program's
#   node_modules and runs it with node, passing the same flags and PULUMI_CONFIG /
#   PULUMI_CONFIG_SECRET_KEYS / PULUMI_NODEJS_TYPESCRIPT / _TSCONFIG_PATH as the real
#   host; exit code 32 means "error already reported" (bail). It reports no required
#   plugins, does not install dependencies (run npm yourself), and does not implement
#   RunPlugin/codegen/templates (Node.js plugins, `pulumi convert`, `pulumi new`).
#   Set PULUMI_LANGUAGE_NODEJS_VERSION=<exact pseudo-version> to build the real host
#   instead (one exact try; if the proxy refuses it the build fails).
#   Inline Automation API programs (LocalWorkspace with `program`) don't use any
#   language host binary: the SDK serves the language runtime in-process.
set -euo pipefail

MIN_VERSION="3.270.0"
VERSION="${PULUMI_CLI_VERSION:-v3.274.1}"
VERSION="v${VERSION#v}"
LANGHOST_VERSION="${PULUMI_LANGUAGE_NODEJS_VERSION:-}"
CACHE_ROOT="${PULUMI_CONNTRACK_CACHE:-$HOME/.cache/pulumi-conntrack}"
CLI_ROOT="$CACHE_ROOT/pulumi-cli"
STANDIN_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/pulumi-language-nodejs-standin/main.go"
# Keyed by the CLI version and the stand-in's source, so a changed stand-in is rebuilt.
VER_DIR="$CLI_ROOT/$VERSION-$(sha256sum "$STANDIN_SRC" | cut -c1-8)"
BIN_DIR="$VER_DIR/bin"
LANGHOST_MODULE="github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3"

LOG_NAME=pulumi-cli
# shellcheck source=scripts/go-build-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-build-lib.sh"

# ---- 1. Use what is on PATH, if good enough ----------------------------------------
if pulumi_path="$(command -v pulumi 2>/dev/null)" && [ -x "$pulumi_path" ]; then
  path_version="$(PULUMI_SKIP_UPDATE_CHECK=true "$pulumi_path" version 2>/dev/null | head -n1 || true)"
  path_dir="$(abs_dir "$(dirname "$pulumi_path")")"
  if [ -n "$path_version" ] && version_ge "$path_version" "$MIN_VERSION" &&
    [ -x "$path_dir/pulumi-language-nodejs" ]; then
    log "using pulumi $path_version and pulumi-language-nodejs from PATH ($path_dir)"
    printf '%s\n' "$path_dir"
    exit 0
  fi
  log "pulumi on PATH ($pulumi_path, version '${path_version:-unknown}') is not usable here" \
    "(need >= $MIN_VERSION with pulumi-language-nodejs beside it)"
fi

# ---- 2. Reuse a finished build -------------------------------------------------------
built() { [ -x "$BIN_DIR/pulumi" ] && [ -x "$BIN_DIR/pulumi-language-nodejs" ]; }
if built; then
  log "using cached build $BIN_DIR"
  printf '%s\n' "$(abs_dir "$BIN_DIR")"
  exit 0
fi

# ---- 3. Build --------------------------------------------------------------------------
if ! begin_go_build "$CLI_ROOT" "$VERSION" built; then
  log "using build $BIN_DIR (finished while waiting)"
  printf '%s\n' "$(abs_dir "$BIN_DIR")"
  exit 0
fi
MOD_DIR="$BUILD_DIR/mod"
OUT_DIR="$BUILD_DIR/bin"
mkdir -p "$MOD_DIR/langhost" "$OUT_DIR"

LDFLAGS="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$VERSION"
BUILD_FLAGS=(-p 2 -trimpath -tags osusergo,grpcnotrace -ldflags "$LDFLAGS")

start_seconds=$SECONDS
log "building pulumi $VERSION with $(go version | cut -d' ' -f3) in $BUILD_DIR (expect ~8 min on 2 cores)"

# Which Go does pkg/v3 need? (go.mod's `go` line.)
pkg_mod_file="$(go_mod_file "github.com/pulumi/pulumi/pkg/v3@$VERSION")"
[ -f "$pkg_mod_file" ] || die "could not download github.com/pulumi/pulumi/pkg/v3@$VERSION from the Go module proxy"
need_go="$(go_line "$pkg_mod_file")"
use_go_at_least "$need_go" "pkg/v3 $VERSION"

{
  printf 'module pulumiconntrack.local/pulumicli\n\ngo %s\n\n' "${need_go:-1.26}"
  printf 'require (\n'
  printf '\tgithub.com/pulumi/pulumi/pkg/v3 %s\n' "$VERSION"
  printf '\tgithub.com/pulumi/pulumi/sdk/v3 %s\n' "$VERSION"
  if [ -n "$LANGHOST_VERSION" ]; then
    printf '\t%s %s\n' "$LANGHOST_MODULE" "$LANGHOST_VERSION"
  fi
  printf ')\n\n'
  # From pkg/v3's own go.mod (replace directives of dependencies are ignored).
  printf 'replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e\n'
} >"$MOD_DIR/go.mod"

log "go build github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
(cd "$MOD_DIR" && go build "${BUILD_FLAGS[@]}" -o "$OUT_DIR/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

if [ -n "$LANGHOST_VERSION" ]; then
  log "go build $LANGHOST_MODULE@$LANGHOST_VERSION (real language host)"
  (cd "$MOD_DIR" && go build "${BUILD_FLAGS[@]}" -o "$OUT_DIR/pulumi-language-nodejs" "$LANGHOST_MODULE")
  langhost_kind="real $LANGHOST_MODULE@$LANGHOST_VERSION"
else
  log "go build stand-in pulumi-language-nodejs (see the comment at the top of $0)"
  cp "$STANDIN_SRC" "$MOD_DIR/langhost/main.go"
  (cd "$MOD_DIR" && go build "${BUILD_FLAGS[@]}" -o "$OUT_DIR/pulumi-language-nodejs" ./langhost)
  langhost_kind="stand-in (tools/pulumi-language-nodejs-standin), linked against sdk/v3 $VERSION"
fi

# ---- 4. Verify, then publish atomically ---------------------------------------------------
got_version="$(PULUMI_SKIP_UPDATE_CHECK=true "$OUT_DIR/pulumi" version 2>/dev/null | head -n1 || true)"
[ "$got_version" = "$VERSION" ] || die "built pulumi reports version '$got_version', expected $VERSION"
"$OUT_DIR/pulumi-language-nodejs" -help >/dev/null 2>&1 ||
  die "built pulumi-language-nodejs does not start ($OUT_DIR/pulumi-language-nodejs -help failed)"

printf 'pulumi %s\npulumi-language-nodejs: %s\ngo: %s\nbuilt: %s\n' \
  "$VERSION" "$langhost_kind" "$(go version)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$OUT_DIR/BUILD-INFO"

mkdir -p "$VER_DIR"
if ! mv -T "$OUT_DIR" "$BIN_DIR" 2>/dev/null; then
  # Another build finished first; keep its result if it is complete.
  if built; then
    log "another build already published $BIN_DIR; using it"
  else
    die "could not move the build to $BIN_DIR (it exists but is incomplete: delete it and rerun)"
  fi
fi

elapsed=$((SECONDS - start_seconds))
log "built pulumi $VERSION + pulumi-language-nodejs ($langhost_kind) in $((elapsed / 60))m$((elapsed % 60))s"
printf '%s\n' "$(abs_dir "$BIN_DIR")"
