#!/usr/bin/env bash
# Installs the nginx + nchan baseline of the comparison benchmark (bench/run.py): Debian's `nginx`
# and `libnginx-mod-nchan` packages, with apt-get, only if they are missing (running it again does
# nothing). It needs root (or sudo) and the Debian package archive.
#
# It does not configure or start the system's nginx: the benchmark runs its own nginx with its own
# config and temp dir (bench/nchan/run-nginx.sh), on 127.0.0.1 and a port of its choosing. On
# Debian images with a policy-rc.d that forbids starting services (as Docker images have), the
# package's own service does not start either; elsewhere it may, on port 80, and can be stopped
# with `service nginx stop` without affecting the benchmark.
set -euo pipefail

module=/usr/lib/nginx/modules/ngx_nchan_module.so

if command -v nginx >/dev/null 2>&1 && [ -f "$module" ]; then
    echo "nginx and nchan are already installed: $(nginx -v 2>&1), $module"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

echo "installing Debian's nginx and libnginx-mod-nchan with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    nginx libnginx-mod-nchan

if ! [ -f "$module" ]; then
    echo "error: the nchan module is not at $module after the install" >&2
    exit 1
fi
echo "installed: $(nginx -v 2>&1), nchan $(dpkg-query -W -f='${Version}' libnginx-mod-nchan)"
