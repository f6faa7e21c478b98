#!/usr/bin/env bash
# The container's entry point (started by tini).
#
#   (no command) or "lab [lab.py options]"   JupyterLab on the notebooks, always behind a token
#   "hub [options]"                           the room server's single-user server (docker/hub)
#   any other command                         run it, e.g. `hello-dl env`, `hello-dl run`, `bash`
#
# Either way the CUDA libraries are found (GPU image) and a home folder exists for any user id.
set -euo pipefail

kit_dir="${HELLO_DL_HOME:-/home/learner/hello-dl}"
pristine_notebooks=/opt/hello-dl/notebooks

# TensorFlow's pip-installed CUDA/cuDNN libraries (GPU image only) go on the library path, as the
# Jupyter Docker Stacks CUDA images do, ahead of the driver folder the NVIDIA runtime may mount.
cuda_library_dirs() {
    local dir found=()
    for dir in "${VIRTUAL_ENV:-/opt/venv}"/lib/python3*/site-packages/nvidia/*/lib; do
        if [ -d "${dir}" ]; then found+=("${dir}"); fi
    done
    local IFS=:
    echo "${found[*]}"
}
cuda_dirs=$(cuda_library_dirs)
if [ -n "${cuda_dirs}" ]; then
    export LD_LIBRARY_PATH="${cuda_dirs}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
fi

# Started with `--user <id>` (to match a mounted folder's owner): that user has no home folder,
# but Jupyter and Matplotlib need a writable one.
if [ ! -w "${HOME:-/nonexistent}" ]; then
    HOME="/tmp/home-$(id -u)"
    export HOME
    mkdir -p "${HOME}"
fi

# A plain-words hint before JupyterLab starts; `hello-dl env` (first notebook) gives the full report.
say_where_training_runs() {
    local gpus=""
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpus=$(nvidia-smi -L 2>/dev/null || true)
    fi
    if [ -n "${gpus}" ] && [ -n "${cuda_dirs}" ]; then
        echo "GPU found (${gpus%%$'\n'*}): training will run on the GPU."
    elif [ -n "${gpus}" ]; then
        echo "A GPU is visible, but this image was built without GPU support (GPU=0): training runs on the CPU."
    else
        echo "No GPU is visible to this container: everything runs on the CPU (training is slower, all notebooks work)."
        if [ -n "${cuda_dirs}" ]; then
            echo "(On a computer with an NVIDIA GPU, start the 'gpu' service instead, or use docker run --gpus all.)"
        fi
    fi
}

# A mounted notebooks folder that is empty (first start) gets the kit's notebooks; files already
# there are the participant's work and are never overwritten.
fill_notebooks_folder() {
    local target="${kit_dir}/notebooks" item copied=0
    if ! mkdir -p "${target}" 2>/dev/null || [ ! -w "${target}" ]; then
        echo "Warning: the notebooks folder ${target} is not writable for user id $(id -u), so changes cannot be saved." >&2
        echo "         Make the mounted folder writable for that user id (or start the container with --user)." >&2
        return 0
    fi
    for item in "${pristine_notebooks}"/*; do
        if [ -e "${item}" ] && [ ! -e "${target}/${item##*/}" ]; then
            cp -R "${item}" "${target}/"
            copied=$((copied + 1))
        fi
    done
    if [ "${copied}" -gt 0 ]; then
        echo "Copied ${copied} notebook file(s) of the kit into ${target}."
    fi
    if ! mkdir -p "${kit_dir}/outputs" 2>/dev/null || [ ! -w "${kit_dir}/outputs" ]; then
        echo "Warning: the outputs folder ${kit_dir}/outputs is not writable for user id $(id -u): training results cannot be saved." >&2
    fi
}

start_lab() {
    local token="${JUPYTER_TOKEN:-}" origin
    if [ -z "${token//[[:space:]]/}" ]; then
        # Never an empty token: without one, anybody who can reach the port could run code here.
        token=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
        origin="made up just now; set JUPYTER_TOKEN to choose your own"
    else
        origin="from JUPYTER_TOKEN"
    fi
    export JUPYTER_TOKEN="${token}"
    local port="${HOST_PORT:-8888}"

    say_where_training_runs
    fill_notebooks_folder
    cat <<EOF

==============================================================================================
  JupyterLab is starting (about 10 seconds).
  Open this address in your web browser:

      http://127.0.0.1:${port}/lab?token=${token}

  If JupyterLab asks for a password or token, type:   ${token}
  (${origin})
  Lost this message? Show it again:  docker compose -f docker/compose.yaml logs
                                     (started with docker run: docker logs <container name>)
  Your notebooks and results are kept in Docker volumes when the container stops.
==============================================================================================

EOF
    # scripts/lab.py is what `make lab` runs: notebooks/ as the root, the token from the environment.
    exec python "${kit_dir}/scripts/lab.py" --ip 0.0.0.0 --no-browser "$@"
}

# On a room server (docker/hub: JupyterHub starts one container per participant): the same
# preparation, then the single-user server the hub talks to (address and token in the environment).
start_hub_server() {
    say_where_training_runs
    fill_notebooks_folder
    exec jupyterhub-singleuser "$@"
}

if [ "$#" -eq 0 ]; then
    start_lab
elif [ "$1" = lab ]; then
    shift
    start_lab "$@"
elif [ "$1" = hub ]; then
    shift
    start_hub_server "$@"
else
    exec "$@"
fi
