#!/usr/bin/env bash
# Validates every manifest under deploy/k8s and deploy/agones and every seccomp profile
# under deploy/seccomp, strictly and without a cluster: Kubernetes kinds against the
# JSON schemas bundled in the PyPI package kubernetes-validate, Agones kinds against
# deploy/schemas/agones-v1.schema.json, seccomp profiles against
# deploy/schemas/oci-seccomp.schema.json, and every pod template against Pod Security
# Admission's restricted seccomp rule, its Localhost profiles against the files in
# deploy/seccomp (deploy/validate.py does the checking). Exits non-zero on any error.
#
#   deploy/validate.sh               validate the manifests and profiles
#   deploy/validate.sh FILE...       validate these files (.yaml manifests, .json profiles)
#   deploy/validate.sh --self-test   also prove that broken copies are rejected
#
# K8S_VERSION (default 1.31) picks the Kubernetes schema version.
#
# Network, first run only: the Python tools are installed into target/validate-venv
# (ignored by git) from PyPI with pip (kubernetes-validate==1.37.0 and its
# dependencies, about 10 packages), and, on Debian without python3-venv, that package
# comes from Debian's archive with apt-get (as root). Later runs use the venv and need
# no network. Without network, pip's own settings point it at a folder of wheels
# made elsewhere with `pip download kubernetes-validate==1.37.0 -d wheels`:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels deploy/validate.sh
set -euo pipefail

deploy="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$deploy")"
venv="$root/target/validate-venv"
k8s_version="${K8S_VERSION:-1.31}"
# Pinned: the bundled Kubernetes schemas (1.25 to 1.37) come with the version.
requirement="kubernetes-validate==1.37.0"

install() {
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null; then
    return
  fi
  echo "validate.sh: first run: installing $requirement into $venv (needs PyPI, or PIP_FIND_LINKS)" >&2
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 lacks venv until python3-venv is installed.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$requirement"; then
    echo "validate.sh: could not install $requirement from PyPI; offline, set PIP_NO_INDEX=1" \
      "and PIP_FIND_LINKS to a folder of wheels (see the top of this script)" >&2
    exit 1
  fi
}

validate() {
  "$venv/bin/python" "$deploy/validate.py" --k8s-version "$k8s_version" "$@"
}

manifests() {
  find "$deploy/k8s" "$deploy/agones" -name '*.yaml' | sort
  find "$deploy/seccomp" -name '*.json' | sort
}

# Copies every manifest into a temp dir, breaks one copy with sed, and expects the
# validator to reject it; the unbroken copies must pass. A sed that changes nothing
# fails the self-test too, so the cases cannot rot silently.
self_test() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  local failures=0 cases=0
  break_copy() { # NAME FILE SED-EXPRESSION
    local name="$1" file="$2" expr="$3"
    cases=$((cases + 1))
    mkdir -p "$tmp/$name"
    sed -e "$expr" "$deploy/$file" >"$tmp/$name/$(basename "$file")"
    if cmp -s "$deploy/$file" "$tmp/$name/$(basename "$file")"; then
      echo "self-test: case '$name' did not change $file (stale sed expression)"
      failures=$((failures + 1))
    elif validate "$tmp/$name/$(basename "$file")" >"$tmp/$name.log"; then
      echo "self-test: case '$name' was ACCEPTED, expected a schema error:"
      cat "$tmp/$name.log"
      failures=$((failures + 1))
    else
      echo "self-test: case '$name' rejected as expected: $(grep -m1 '^ERROR' "$tmp/$name.log")"
    fi
  }
  break_copy misspelt-k8s-field k8s/statefulset.yaml \
    's/terminationGracePeriodSeconds:/terminationGracePeriodSecond:/'
  break_copy wrong-k8s-type k8s/statefulset.yaml 's/replicas: 1/replicas: one/'
  break_copy misspelt-probe-field k8s/statefulset.yaml 's/^\( *\)path: \/readyz/\1paths: \/readyz/'
  break_copy agones-enum agones/fleet.yaml 's/portPolicy: Dynamic/portPolicy: Dynamc/'
  break_copy agones-pod-template agones/gameserver.yaml \
    's/readOnlyRootFilesystem: true/readOnlyRootFileSystem: true/'
  break_copy agones-missing-field agones/fleetautoscaler.yaml '/fleetName:/d'
  break_copy unknown-kind k8s/configmap.yaml 's/^kind: ConfigMap/kind: ConfigMapp/'
  break_copy duplicate-key k8s/configmap.yaml 's/^  RUST_LOG: "info"/  RUST_LOG: "info"\n  RUST_LOG: "debug"/'
  break_copy bad-yaml k8s/service.yaml 's/^spec:/spec: [/'
  break_copy seccomp-unconfined k8s/statefulset.yaml \
    's/type: Localhost/type: Unconfined/'
  break_copy seccomp-missing-profile agones/fleet.yaml \
    's/localhostProfile: corecast.json/localhostProfile: corecast-missing.json/'
  break_copy seccomp-unset k8s/statefulset.yaml '/seccompProfile:/,/localhostProfile:/d'
  break_copy seccomp-bad-json seccomp/corecast.json '1s/^{/{,/'
  break_copy seccomp-unknown-field seccomp/corecast.json 's/"errnoRet"/"errnoReturn"/'
  break_copy seccomp-no-io-uring seccomp/corecast.json 's/"io_uring_enter"/"io_uring_entre"/'

  # The originals, copied elsewhere, still pass (the checks do not depend on paths).
  mkdir -p "$tmp/originals"
  # shellcheck disable=SC2046 # manifest paths have no spaces
  cp $(manifests) "$tmp/originals/"
  if ! validate "$tmp"/originals/*.yaml >"$tmp/originals.log"; then
    echo "self-test: the unmodified manifests were rejected:"
    cat "$tmp/originals.log"
    failures=$((failures + 1))
  fi
  if [ "$failures" -ne 0 ]; then
    echo "self-test FAILED: $failures problem(s) in $cases cases"
    return 1
  fi
  echo "self-test ok: all $cases broken copies rejected, the originals accepted"
}

install
if [ "${1:-}" = "--self-test" ]; then
  shift
  self_test
fi
if [ $# -gt 0 ]; then
  validate "$@"
else
  # shellcheck disable=SC2046 # manifest paths have no spaces
  validate $(manifests)
fi
