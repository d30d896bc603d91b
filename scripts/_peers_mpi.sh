# shellcheck shell=bash
# Sourced by scripts/conformance and scripts/bench: installs the MPI *peer* (Open MPI + the real
# mpi4py) OUTSIDE the project venv, so it can never shadow granny's own `mpi4py` shim.
#
#   source scripts/_peers_mpi.sh
#   peers_mpi_install        # idempotent; returns non-zero (with a note) if anything is missing
#   peers_mpi_suite          # idempotent; unpacks mpi4py's own test/ folder into $MPI4PY_TEST_DIR
#
# Env: PEERS_MPI_VENV (default ~/.cache/granny/peers-mpi), GRANNY_CACHE (default ~/.cache/granny).
# mpi4py is built from source (`--no-binary mpi4py`) against the system Open MPI: a few minutes the
# first time, nothing afterwards. Versions are those of /work/shared/BASELINES.md.

GRANNY_CACHE=${GRANNY_CACHE:-$HOME/.cache/granny}
PEERS_MPI_VENV=${PEERS_MPI_VENV:-$GRANNY_CACHE/peers-mpi}
PEERS_MPI_PY="$PEERS_MPI_VENV/bin/python"
MPI4PY_VERSION=${MPI4PY_VERSION:-4.1.2}
PEERS_NUMPY_VERSION=${PEERS_NUMPY_VERSION:-2.4.6}
MPI4PY_SDIST="$GRANNY_CACHE/mpi4py-$MPI4PY_VERSION.tar.gz"
MPI4PY_TEST_DIR="$GRANNY_CACHE/mpi4py-$MPI4PY_VERSION/test"
# mpirun as root, more ranks than cores: both are normal here.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

_peers_mpi_log() { echo "[peers-mpi] $*" >&2; }

peers_mpi_ok() {  # 0 when mpirun and the peer venv's mpi4py are there, at the pinned versions
  command -v mpirun >/dev/null 2>&1 && [[ -x "$PEERS_MPI_PY" ]] &&
    "$PEERS_MPI_PY" - "$MPI4PY_VERSION" "$PEERS_NUMPY_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys, importlib.metadata as md
assert md.version("mpi4py") == sys.argv[1] and md.version("numpy") == sys.argv[2]
PYEOF
}

peers_mpi_install() {
  if peers_mpi_ok; then return 0; fi
  if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
      _peers_mpi_log "Open MPI missing and cannot apt-get install it (not root, or no apt-get)"; return 1
    fi
    _peers_mpi_log "apt-get install openmpi-bin libopenmpi-dev"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openmpi-bin libopenmpi-dev; } \
      >"${TMPDIR:-/tmp}/peers-mpi-apt.log" 2>&1 ||
      { _peers_mpi_log "apt-get failed, see ${TMPDIR:-/tmp}/peers-mpi-apt.log"; return 1; }
  fi
  mkdir -p "$GRANNY_CACHE"
  if [[ ! -x "$PEERS_MPI_PY" ]]; then
    _peers_mpi_log "creating $PEERS_MPI_VENV"
    python3 -m venv "$PEERS_MPI_VENV" || return 1
  fi
  _peers_mpi_log "pip install numpy==$PEERS_NUMPY_VERSION mpi4py==$MPI4PY_VERSION (mpi4py built from source; minutes)"
  # Unset CC etc.? No: mpi4py finds mpicc on PATH, which is what we want.
  "$PEERS_MPI_VENV/bin/pip" install -q "numpy==$PEERS_NUMPY_VERSION" >&2 || return 1
  "$PEERS_MPI_VENV/bin/pip" install -q --no-binary mpi4py "mpi4py==$MPI4PY_VERSION" >&2 || return 1
  peers_mpi_ok || { _peers_mpi_log "installed, but the version check still fails"; return 1; }
}

peers_mpi_suite() {  # mpi4py's own unittest suite, unmodified, from the sdist
  if [[ -f "$MPI4PY_TEST_DIR/main.py" || -f "$MPI4PY_TEST_DIR/runtests.py" ]]; then return 0; fi
  mkdir -p "$GRANNY_CACHE"
  if [[ ! -f "$MPI4PY_SDIST" ]]; then
    local pip
    pip=$(command -v pip3 || command -v pip || true)
    [[ -x "$PEERS_MPI_VENV/bin/pip" ]] && pip="$PEERS_MPI_VENV/bin/pip"
    [[ -z "$pip" && -x "${VENV:-.venv}/bin/pip" ]] && pip="${VENV:-.venv}/bin/pip"  # a fresh CI machine
    [[ -n "$pip" ]] || { _peers_mpi_log "no pip to download the mpi4py sdist"; return 1; }
    _peers_mpi_log "pip download --no-binary mpi4py --no-deps mpi4py==$MPI4PY_VERSION"
    # --no-binary for mpi4py only: with :all: pip would also build setuptools/Cython from source
    # just to read the metadata (~3 min); the downloaded file is the same sdist either way.
    "$pip" download -q --no-binary mpi4py --no-deps "mpi4py==$MPI4PY_VERSION" -d "$GRANNY_CACHE" >&2 || return 1
  fi
  _peers_mpi_log "unpacking test/ of $MPI4PY_SDIST into $MPI4PY_TEST_DIR"
  tar -xzf "$MPI4PY_SDIST" -C "$GRANNY_CACHE" "mpi4py-$MPI4PY_VERSION/test" || return 1
}
