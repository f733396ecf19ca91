# Sourced by scripts/pulumi-cli.sh and scripts/pulumi-yaml.sh: what building a Go program from
# the Go module proxy into ~/.cache/pulumi-conntrack takes, whatever the program. The caller sets
# LOG_NAME (its messages' prefix) and `set -euo pipefail`.

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# version_ge A B: true when A >= B (both like 3.274.1; a leading v is ignored).
version_ge() {
  local a="${1#v}" b="${2#v}"
  [ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" = "$b" ]
}

abs_dir() { (cd "$1" && pwd); }

# begin_go_build ROOT KEY READY: makes BUILD_DIR, a temp dir under ROOT removed on exit, for one
# build of KEY, and sets up Go for it. One build per KEY at a time (flock): a second caller waits
# for the first; then READY (a command) tells whether the result exists now, and if it does,
# begin_go_build returns 1 and makes nothing.
begin_go_build() {
  local root="$1" key="$2" ready="$3"
  command -v go >/dev/null 2>&1 || die "go is not on PATH (the build needs the Go toolchain)"
  mkdir -p "$root"
  # Old temp dirs from builds that crashed or were killed.
  find "$root" -mindepth 1 -maxdepth 1 -name '.build-*' -mmin +180 -exec rm -rf {} + 2>/dev/null || true
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$root/.lock-$key"
    if ! flock -n 9; then
      log "another build of $key is running; waiting for it"
      flock 9
    fi
    if "$ready"; then return 1; fi
  fi
  BUILD_DIR="$(mktemp -d "$root/.build-$key-XXXXXX")"
  trap 'rm -rf "$BUILD_DIR"' EXIT
  export GOFLAGS="-mod=mod -buildvcs=false"
  # The machine's Go unless a caller pinned a toolchain (the approved one is go1.27.3).
  case "${GOTOOLCHAIN:-}" in
    go1.*) ;;
    *) export GOTOOLCHAIN=local ;;
  esac
}

# go_mod_file MODULE@VERSION: downloads the module through the proxy and prints its go.mod's path.
go_mod_file() {
  (cd "$BUILD_DIR" && GOFLAGS= go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
}

# go_line GO_MOD: the Go version a go.mod's `go` line asks for.
go_line() { sed -n 's/^go \([0-9.]*\).*/\1/p' "$1" | head -n1; }

# use_go_at_least VERSION WHAT: past the local Go, the one approved way is GOTOOLCHAIN=go1.27.3,
# fetched through the module proxy.
use_go_at_least() {
  local have
  have="$(go env GOVERSION)"
  have="${have#go}"
  if [ -n "$1" ] && ! version_ge "$have" "$1" && [ "$GOTOOLCHAIN" = local ]; then
    log "$2 needs Go $1 (have $have): using GOTOOLCHAIN=go1.27.3"
    export GOTOOLCHAIN=go1.27.3
  fi
}
