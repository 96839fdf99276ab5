#!/bin/sh
# Installs podman and runc from Debian and configures them as these hosts need: runc as the
# runtime (crun fails on hybrid cgroups) and default ulimits within the hard limits. An
# existing /etc/containers/containers.conf is left alone (this says what to set in it).
# Needs root and apt-get. CI runs it; the container tests say "skipped" without podman.
set -eu
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
conf=/etc/containers/containers.conf
if [ ! -e "$conf" ]; then
    mkdir -p /etc/containers
    cat >"$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
elif ! grep -q '^runtime *= *"runc"' "$conf"; then
    echo "setup-podman.sh: $conf exists and is left as it is; if containers fail to start," \
        'set [engine] runtime = "runc" and [containers] default_ulimits =' \
        '["nofile=1024:1024", "nproc=4096:4096"] in it' >&2
fi
echo "setup-podman.sh: podman $(podman version --format '{{.Client.Version}}'), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}')"
