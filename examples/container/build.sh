#!/bin/sh
# Builds the static (musl) binaries of the dist profile, then three images FROM scratch:
#   localhost/deputy/http-service:dev   http-service as PID 1
#   localhost/deputy/plain-server:dev   plain-server under `deputy run` as PID 1
#   localhost/deputy/tcp-proxy:dev      tcp-proxy under `deputy run` as PID 1 (a sidecar)
# All have deputy at /usr/local/bin/deputy, for a preStop to exec.
#
#   examples/container/build.sh          (from anywhere; needs podman, and rustup or the
#                                         x86_64-unknown-linux-musl target installed)
#
# The binaries are built in target/static (CARGO_TARGET_DIR to change it), where the
# supervisors benchmark builds its static deputy too, so the two share one build.
set -eu
cd "$(dirname "$0")/../.."
arch=$(uname -m)
triple="$arch-unknown-linux-musl"
target_dir=${CARGO_TARGET_DIR:-$PWD/target/static}

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
    echo "build.sh: installing the $triple target" >&2
    rustup target add "$triple"
fi
CARGO_TARGET_DIR="$target_dir" cargo build --quiet --profile dist --target "$triple" \
    -p deputy-ipc --bin deputy \
    -p deputy-examples --example http-service --example plain-server --example tcp-proxy

built="$target_dir/$triple/dist"
context="$target_dir/container"
mkdir -p "$context"
cp "$built/deputy" "$built/examples/http-service" "$built/examples/plain-server" \
    "$built/examples/tcp-proxy" "$context/"
for image in http-service plain-server tcp-proxy; do
    podman build --quiet --file "examples/container/$image.Containerfile" \
        --tag "localhost/deputy/$image:dev" "$context" >/dev/null
    echo "build.sh: localhost/deputy/$image:dev"
done
