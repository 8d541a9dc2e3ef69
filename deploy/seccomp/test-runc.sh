#!/usr/bin/env bash
# Runs the release server under runc with deploy/seccomp/corecast.json, the way the
# manifests run it (uid 65532, no capabilities, no new privileges, read-only root),
# and checks three things:
#   1. without the io_uring rule (that is, containerd's RuntimeDefault) it never
#      listens: the profile's one addition is needed;
#   2. with the profile it serves: two loopback clients log in with the token, join a
#      room and hear each other, a wrong token is refused, /healthz answers, SIGTERM
#      ends it with exit status 0;
#   3. the same run passes with defaultAction SCMP_ACT_KILL_PROCESS: the server made
#      no syscall outside the profile's list (a denied one would have killed it).
#
#   cargo build --release --bin corecast --example hello
#   deploy/seccomp/test-runc.sh            (as root; installs Debian's runc if missing)
#
# CORECAST_BIN and HELLO_BIN override target/release/corecast and
# target/release/examples/hello; PORT (default 17870) is the first of the loopback
# ports used (PORT .. PORT+5). The container shares the host's network namespace so
# that the clients reach it on 127.0.0.1; nothing listens elsewhere. Not part of CI:
# it needs root, runc and a release build.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$(dirname "$here")")"
server="${CORECAST_BIN:-$root/target/release/corecast}"
hello="${HELLO_BIN:-$root/target/release/examples/hello}"
port="${PORT:-17870}"
for bin in "$server" "$hello"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release --bin corecast --example hello" >&2; exit 2; }
done
if ! command -v runc >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq runc >/dev/null
fi
runc --version | head -1

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
bundle="$work/bundle"
# The image's runtime stage is distroless/cc: the binary plus what `ldd` lists.
mkdir -p "$bundle/rootfs"
cp "$server" "$bundle/rootfs/corecast"
ldd "$server" | grep -o '/[^ ]*' | while read -r lib; do
  mkdir -p "$bundle/rootfs$(dirname "$lib")"
  cp -L "$lib" "$bundle/rootfs$lib"
done
(cd "$bundle" && runc spec)

# Writes config.json for one case: the profile, possibly altered, and the ports.
configure() { # PROFILE-FILE DEFAULT-ACTION DROP-IO-URING PORT
  python3 - "$bundle/config.json" "$@" <<'EOF'
import json, sys
path, profile_file, default_action, drop_io_uring, port = sys.argv[1:]
c = json.load(open(path))
profile = json.load(open(profile_file))
if default_action != "-":
    profile["defaultAction"] = default_action
if drop_io_uring == "yes":
    profile["syscalls"] = [r for r in profile["syscalls"]
                           if not any(n.startswith("io_uring_") for n in r["names"])]
p = c["process"]
p["terminal"] = False
p["user"] = {"uid": 65532, "gid": 65532}
p["args"] = ["/corecast", "--listen", f"127.0.0.1:{port}", "--shards", "2",
             "--metrics-listen", f"127.0.0.1:{int(port) + 1}", "--shutdown-grace", "1"]
p["env"] = ["PATH=/", "CORECAST_AUTH_TOKEN=test-token", "RUST_LOG=info"]
p["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
p["noNewPrivileges"] = True
p["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096},
                {"type": "RLIMIT_MEMLOCK", "hard": 8388608, "soft": 8388608}]
c["root"]["readonly"] = True
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
c["linux"]["seccomp"] = profile
json.dump(c, open(path, "w"), indent=1)
EOF
}

# run_case NAME DEFAULT-ACTION DROP-IO-URING PORT EXPECT(serves|fails)
failures=0
run_case() {
  local name="$1" action="$2" drop="$3" port="$4" expect="$5" id="corecast-seccomp-$4"
  local log="$work/$name.log" ready=no
  configure "$here/corecast.json" "$action" "$drop" "$port"
  (cd "$bundle" && exec runc run "$id") >"$log" 2>&1 &
  local runner=$!
  for _ in $(seq 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$((port + 1))/readyz" 2>/dev/null; then ready=yes; break; fi
    kill -0 "$runner" 2>/dev/null || break
    sleep 0.1
  done
  local verdict=""
  if [ "$ready" = yes ]; then
    local pid
    pid="$(runc state "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
    echo "  $name: listening; server $(grep -E '^Seccomp:' "/proc/$pid/status" | tr -s '\t' ' ') (2 = filter)"
    CORECAST_AUTH_TOKEN=test-token timeout 4 "$hello" "127.0.0.1:$port" ann lobby >"$work/ann" 2>&1 &
    local ann=$!
    sleep 1
    CORECAST_AUTH_TOKEN=test-token timeout 2 "$hello" "127.0.0.1:$port" bob lobby >"$work/bob" 2>&1 || true
    wait "$ann" || true
    CORECAST_AUTH_TOKEN=wrong timeout 2 "$hello" "127.0.0.1:$port" eve lobby >"$work/eve" 2>&1 || true
    local health
    health="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((port + 1))/healthz")"
    runc kill "$id" TERM
    local status=0
    wait "$runner" || status=$?
    grep -q 'body: b"hello from bob"' "$work/ann" || verdict+=" ann-did-not-hear-bob"
    grep -q 'bob joined lobby; members: \["ann", "bob"\]' "$work/bob" || verdict+=" bob-did-not-join"
    grep -q 'Unauthorized' "$work/eve" || verdict+=" wrong-token-not-refused"
    [ "$health" = 200 ] || verdict+=" healthz-$health"
    [ "$status" = 0 ] || verdict+=" exit-status-$status"
    echo "  $name: clients: ann heard bob, bob joined [ann, bob], wrong token Unauthorized," \
      "/healthz $health, exit status after SIGTERM $status"
    [ -z "$verdict" ] && verdict=serves || verdict="broken:$verdict"
  else
    local status=0
    wait "$runner" || status=$?
    echo "  $name: never listened; exit status $status; log: $(grep -m1 -E 'panicked|failed|rror' -A1 "$log" | tr '\n' ' ' | cut -c1-200)"
    verdict=fails
  fi
  runc delete -f "$id" >/dev/null 2>&1 || true
  if [ "$verdict" = "$expect" ]; then
    echo "ok    $name: $verdict, as expected"
  else
    echo "FAIL  $name: $verdict, expected $expect"
    sed 's/^/    | /' "$log"
    failures=$((failures + 1))
  fi
}

run_case runtime-default-without-io_uring - yes "$port" fails
run_case corecast.json - no "$((port + 2))" serves
run_case corecast.json-kill-on-other-syscalls SCMP_ACT_KILL_PROCESS no "$((port + 4))" serves
if [ "$failures" -ne 0 ]; then
  echo "test-runc: $failures case(s) failed"
  exit 1
fi
echo "test-runc: all 3 cases as expected"
