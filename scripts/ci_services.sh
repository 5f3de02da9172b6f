#!/usr/bin/env bash
# System packages for the servers that the hub tests start on 127.0.0.1 (tests/conftest_servers.py):
#   nginx  - static files with Range/ETag/If-Range for the resumable-download tests.
# moto_server (S3 presigned URLs) and jsonschema come from PyPI as test extras: moto[server], boto3, jsonschema.
# Idempotent: installs only what is missing. Needs root (apt-get), as on CI.
set -euo pipefail

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    echo "ci_services: nginx present ($(/usr/sbin/nginx -v 2>&1 || nginx -v 2>&1))"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# nginx-light is the small Debian build (bookworm); newer releases only ship "nginx".
apt-get install -y -qq --no-install-recommends nginx-light >/dev/null \
    || apt-get install -y -qq --no-install-recommends nginx >/dev/null
echo "ci_services: installed $(/usr/sbin/nginx -v 2>&1)"
