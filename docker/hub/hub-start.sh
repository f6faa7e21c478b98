#!/usr/bin/env bash
# The hub image's entry point (started by tini).
#
#   proxy            configurable-http-proxy: the room's one public port. Runs on its own, so the
#                    hub can restart while participants keep working (their traffic never stops).
#   hub              JupyterHub with docker/hub/jupyterhub_config.py
#   cards ARGS...    `hello-dl room cards --folder /srv/room ARGS...` (seat cards without a venv)
#   anything else    run it (e.g. `bash`)
#
# Settings come from the environment (docker/hub/compose.yaml lists them all):
#   HELLO_DL_ROOM_IP / HELLO_DL_ROOM_PORT   where participants connect (default: every interface, 8000)
#   HELLO_DL_ROOM_TLS_CERT / _TLS_KEY       PEM certificate (full chain) and key: the proxy speaks HTTPS
#                                           (default: /srv/tls/fullchain.pem and privkey.pem when present)
set -euo pipefail

state=${HELLO_DL_ROOM_STATE:-/srv/jupyterhub}
hub_port=${HELLO_DL_ROOM_HUB_PORT:-8081}
api_port=${HELLO_DL_ROOM_PROXY_API_PORT:-8001}

# The proxy and the hub share one secret for the proxy's API: made once, kept in the state volume.
proxy_token() {
    local file="${state}/proxy-auth-token" temporary
    mkdir -p "${state}"
    if [ ! -s "${file}" ]; then
        temporary=$(mktemp "${file}.XXXXXX")  # mode 0600
        python3 -c 'import secrets; print(secrets.token_hex(32))' > "${temporary}"
        # Proxy and hub may start at the same moment: the first token written wins, atomically.
        ln "${temporary}" "${file}" 2>/dev/null || true
        rm -f "${temporary}"
    fi
    cat "${file}"
}

start_proxy() {
    local args=(--ip "${HELLO_DL_ROOM_IP:-}" --port "${HELLO_DL_ROOM_PORT:-8000}"
                --api-ip 127.0.0.1 --api-port "${api_port}"
                --default-target "http://127.0.0.1:${hub_port}"
                --error-target "http://127.0.0.1:${hub_port}/hub/error")
    local cert=${HELLO_DL_ROOM_TLS_CERT:-} key=${HELLO_DL_ROOM_TLS_KEY:-}
    if [ -z "${cert}${key}" ] && [ -e /srv/tls/fullchain.pem ]; then
        cert=/srv/tls/fullchain.pem key=/srv/tls/privkey.pem
    fi
    if [ -n "${cert}" ] || [ -n "${key}" ]; then
        if [ ! -r "${cert}" ] || [ ! -r "${key}" ]; then
            echo "HELLO_DL_ROOM_TLS_CERT and HELLO_DL_ROOM_TLS_KEY must both name readable PEM files" \
                 "(now: '${cert}' and '${key}'); see docker/hub/README.md, 'HTTPS'." >&2
            exit 2
        fi
        args+=(--ssl-cert "${cert}" --ssl-key "${key}")
        echo "The room is served over HTTPS with ${cert}."
    else
        echo "The room is served over plain HTTP: fine on a closed room network; see docker/hub/README.md for HTTPS."
    fi
    CONFIGPROXY_AUTH_TOKEN=$(proxy_token)
    export CONFIGPROXY_AUTH_TOKEN
    exec configurable-http-proxy "${args[@]}" "$@"
}

start_hub() {
    CONFIGPROXY_AUTH_TOKEN=$(proxy_token)
    export CONFIGPROXY_AUTH_TOKEN
    cd "${state}"
    exec jupyterhub -f /etc/jupyterhub/jupyterhub_config.py "$@"
}

command=${1:-hub}
[ "$#" -eq 0 ] || shift
case "${command}" in
    proxy) start_proxy "$@" ;;
    hub) start_hub "$@" ;;
    cards) exec hello-dl room cards --folder "${HELLO_DL_ROOM_CARDS:-/srv/room}" "$@" ;;
    *) exec "${command}" "$@" ;;
esac
