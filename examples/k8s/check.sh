#!/usr/bin/env bash
# Checks every manifest of examples/k8s against Kubernetes' own schemas (the PyPI package
# kubernetes-validate ships them; --strict refuses fields a version does not know) for the
# oldest and the newest versions the README claims, 1.28 and 1.37. A manifest whose header
# says `minimum Kubernetes: 1.N` (a feature that came later) is checked from 1.N.
# examples/tests/k8s.rs checks the same manifests against the code. Installs
# kubernetes-validate with pip when it is missing. CI runs this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")"
OLDEST=1.28 NEWEST=1.37

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-pip >/dev/null
  fi
  python3 -m pip install -q kubernetes-validate==1.37.0 2>/dev/null \
    || python3 -m pip install -q --break-system-packages kubernetes-validate==1.37.0
  export PATH="$HOME/.local/bin:$PATH"
fi

failed=0
for manifest in *.yaml; do
  minimum=$(grep -oE 'minimum Kubernetes: 1\.[0-9]+' "$manifest" | head -n 1 | grep -oE '1\.[0-9]+$' || true)
  for version in "${minimum:-$OLDEST}" "$NEWEST"; do
    if kubernetes-validate --strict --quiet -k "$version.0" "$manifest"; then
      echo "ok: $manifest against Kubernetes $version"
    else
      echo "FAILED: $manifest against Kubernetes $version"
      failed=1
    fi
  done
done
exit $failed
