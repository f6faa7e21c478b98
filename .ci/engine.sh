# shellcheck shell=bash
# A private Docker engine for CI, shared by .ci/docker-smoke (the kit's image) and the stages it
# hands the engine on to (.ci/hub-load-test: the room server). Sourced, not run.
#
# Provides stage bookkeeping (stage, end_stage, fail, not_tested, timings), the engine itself
# (install_engine_tools, start_engine, stop_daemon), a plain Debian base made by mmdebstrap
# (make_base_image), a clean build context (make_build_context), this machine's extra CA
# certificates as a build secret (collect_extra_ca), BuildKit's per-step times (build_step_times)
# and the clean-up (engine_cleanup: containers, engine, mounts, the work folder).
#
# The caller sets CI_NAME (used in messages) and work (its temporary folder), and installs
#   trap engine_cleanup EXIT; trap 'exit 130' INT TERM

readonly DOCKER=/usr/bin/docker  # Debian's client: it matches the daemon and builds with BuildKit without buildx
export DEBIAN_FRONTEND=noninteractive

work=${work:-}
dockerd_pid=""
made_policy_rc=""
on_ram_disk=""
started_containers=()
timings=()
stage_name=""
stage_started=0
run_started=$(date +%s)

# --- stages, timings, outcomes ----------------------------------------------------------------
end_stage() {
    if [ -n "${stage_name}" ]; then
        local seconds=$(( $(date +%s) - stage_started ))
        timings+=("$(printf '%-9s %5ds' "${stage_name}" "${seconds}")")
        echo "   ${stage_name}: ${seconds}s"
        stage_name=""
    fi
}

stage() {
    end_stage
    stage_name=$1
    stage_started=$(date +%s)
    echo "== ${CI_NAME}: $1 ($2)"
}

not_tested() {
    echo
    echo "=== ${CI_WHAT:-Docker image} NOT tested: $* ==="
    echo
    exit 0
}

fail() {
    echo "${CI_NAME} FAILED in stage '${stage_name:-setup}': $*" >&2
    exit 1
}

print_timings() {
    local status=$1
    if [ "${#timings[@]}" -gt 0 ]; then
        echo "== ${CI_NAME} timings"
        printf '   %s\n' "${timings[@]}"
        echo "   total     $(( $(date +%s) - run_started ))s (exit status ${status})"
    fi
}

# --- the engine --------------------------------------------------------------------------------
# Debian's docker.io, mmdebstrap, shellcheck and curl, without starting any system-wide daemon.
install_engine_tools() {
    local missing=()
    if [ ! -x "${DOCKER}" ] || ! command -v dockerd >/dev/null 2>&1; then missing+=(docker.io); fi
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    [ "${#missing[@]}" -gt 0 ] || return 0
    # Installing docker.io must not start a system-wide daemon: policy-rc.d forbids service starts.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy_rc=1
    fi
    echo "   apt-get install ${missing[*]}"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
        > "${work}/apt.log" 2>&1 || { tail -n 20 "${work}/apt.log"; not_tested "apt-get could not install ${missing[*]}"; }
    if [ -n "${made_policy_rc}" ]; then
        rm -f /usr/sbin/policy-rc.d
        made_policy_rc=""
    fi
}

# dockerd on its own socket, data and exec folders under ${work}: no iptables, no bridge network.
start_engine() {
    mkdir -p "${work}/data" "${work}/exec" "${work}/docker-config"
    export DOCKER_HOST="unix://${work}/docker.sock" DOCKER_CONFIG="${work}/docker-config"
    dockerd --host "${DOCKER_HOST}" --data-root "${work}/data" --exec-root "${work}/exec" \
        --pidfile "${work}/dockerd.pid" --iptables=false --ip-forward=false --bridge=none \
        > "${work}/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
        if ! kill -0 "${dockerd_pid}" 2>/dev/null; then
            tail -n 20 "${work}/dockerd.log"
            dockerd_pid=""
            not_tested "dockerd exited at start (its last log lines are above)"
        fi
        "${DOCKER}" version >/dev/null 2>&1 && break
        sleep 1
    done
    "${DOCKER}" version >/dev/null 2>&1 || { tail -n 20 "${work}/dockerd.log"; not_tested "dockerd did not answer within 60 s"; }
    echo "   dockerd $("${DOCKER}" version --format '{{.Server.Version}}') (pid ${dockerd_pid}) on ${DOCKER_HOST}"
}

# A plain Debian base of this machine's own release (minbase, no Python), imported as $1.
make_base_image() {
    local base_image=$1 suite file
    # shellcheck disable=SC1091  # a system file, not part of the repository
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    # Only this machine's Debian sources (another vendor's entries would need keys the new system lacks).
    local sources=()
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        if [ -f "${file}" ] && grep -v '^[[:space:]]*#' "${file}" | grep -q '/debian'; then
            sources+=("${file}")
        fi
    done
    echo "   Debian ${suite} (minbase, no Python) from: ${sources[*]:-the default Debian mirror}"
    TMPDIR="${work}" mmdebstrap --variant=minbase "${suite}" - "${sources[@]}" 2> "${work}/mmdebstrap.log" |
        "${DOCKER}" import - "${base_image}" >/dev/null ||
        { tail -n 30 "${work}/mmdebstrap.log"; fail "could not make the Debian base image (log above)"; }
    if ! "${DOCKER}" run --rm --network none "${base_image}" true 2> "${work}/run-true.log"; then
        cat "${work}/run-true.log"
        not_tested "the engine started but cannot run a container ($(tail -n 1 "${work}/run-true.log"))"
    fi
}

# The checkout's files as a clean clone has them (plus uncommitted edits) in the folder $1.
make_build_context() {
    local context=$1
    mkdir -p "${context}"
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' path; do [ -e "${path}" ] && printf '%s\0' "${path}"; done |
            tar --null -T - -cf - | tar -xf - -C "${context}"
    else
        tar --exclude=./.venv --exclude=./.git -cf - . | tar -xf - -C "${context}"
    fi
}

# This machine's locally added CA certificates (TLS-intercepting proxy), as one PEM bundle in $1.
collect_extra_ca() {
    local bundle=$1 certificate
    : > "${bundle}"
    chmod 600 "${bundle}"
    while IFS= read -r -d '' certificate; do
        cat "${certificate}" >> "${bundle}"
        echo >> "${bundle}"
    done < <(find /usr/local/share/ca-certificates -type f -name '*.crt' -print0 2>/dev/null | sort -z)
    echo "   extra CA certificates: $(grep -c 'BEGIN CERTIFICATE' "${bundle}" || true)"
}

# One line per build step with its time, from BuildKit's plain log $1.
build_step_times() {
    awk '/^#[0-9]+ \[/ { sub(/^#/, "", $1); name[$1] = substr($0, index($0, "[")) }
         /^#[0-9]+ DONE/ { sub(/^#/, "", $1); done[$1] = $3 }
         /^#[0-9]+ CACHED/ { sub(/^#/, "", $1); done[$1] = "cached" }
         END { for (n in name) printf "%d\t%8s  %.110s\n", n, done[n], name[n] }' "$1" |
        sort -n | cut -f2-
}

# --- clean-up ----------------------------------------------------------------------------------
stop_daemon() {
    [ -n "${dockerd_pid}" ] || return 0
    kill -TERM "${dockerd_pid}" 2>/dev/null || return 0
    local waited
    for waited in $(seq 1 30); do
        kill -0 "${dockerd_pid}" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "${dockerd_pid}" 2>/dev/null; then
        echo "   dockerd did not stop within ${waited}s; killing it"
        kill -KILL "${dockerd_pid}" 2>/dev/null || true
    fi
    # dockerd stops the containerd it started; if it was killed, stop that containerd too.
    local containerd_pid
    containerd_pid=$(cat "${work}/exec/containerd/containerd.pid" 2>/dev/null || true)
    if [ -n "${containerd_pid}" ] && kill -0 "${containerd_pid}" 2>/dev/null; then
        kill -TERM "${containerd_pid}" 2>/dev/null || true
        sleep 2
    fi
}

unmount_under_work() {
    local target
    # Deepest first; the engine and mmdebstrap normally unmount their own, this catches leftovers.
    # (The RAM disk on ${work} itself, if any, is unmounted last, by the caller.)
    findmnt -rn -o TARGET | awk -v root="${work}" 'index($0, root "/") == 1' | sort -r |
        while read -r target; do
            umount "${target}" 2>/dev/null || umount -l "${target}" 2>/dev/null || echo "   could not unmount ${target}"
        done
}

# The EXIT trap: whatever was started or mounted is stopped, unmounted and deleted.
engine_cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    end_stage
    if [ -n "${work}" ]; then
        echo "== ${CI_NAME}: clean-up"
        if [ -n "${dockerd_pid}" ] && [ "${#started_containers[@]}" -gt 0 ]; then
            "${DOCKER}" rm -f "${started_containers[@]}" >/dev/null 2>&1
        fi
        local cleanup_started
        cleanup_started=$(date +%s)
        stop_daemon
        unmount_under_work
        if [ -n "${on_ram_disk}" ]; then
            umount "${work}" 2>/dev/null || umount -l "${work}"
        fi
        rm -rf "${work}"
        timings+=("$(printf '%-9s %5ds' clean-up $(( $(date +%s) - cleanup_started )))")
    fi
    if [ -n "${made_policy_rc}" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    print_timings "${status}"
    exit "${status}"
}
