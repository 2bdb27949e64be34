#!/usr/bin/env bash
# Runs nginx + nchan in the foreground on 127.0.0.1:PORT with the config of a template in this
# folder, nginx.conf.template (one broadcast channel) unless TEMPLATE names another
# (nginx-unicast.conf.template: a channel per user):
#   bench/nchan/run-nginx.sh [PORT] [DIR] [TEMPLATE]
# PORT defaults to 8082; DIR (pid file, logs, temp paths, the generated nginx.conf) to a new temp
# dir. It replaces itself with nginx (exec), so its pid is nginx's master process; the worker that
# does the work is that process's only child. Install nginx and nchan first: bench/nchan/install.sh.
set -euo pipefail
port="${1:-8082}"
dir="${2:-$(mktemp -d -t nchan-bench.XXXXXX)}"
template="${3:-nginx.conf.template}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$dir"
sed -e "s|@PORT@|$port|g" -e "s|@DIR@|$dir|g" "$here/$template" >"$dir/nginx.conf"
echo "nginx-nchan ($template): http://127.0.0.1:$port/events (POST /push), files in $dir" >&2
exec nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
