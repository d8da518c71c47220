#!/usr/bin/env bash
# One-time set-up for a fresh clone: libtorch from PyPI's torch wheel into a project-local
# virtualenv (.venv), with a CUDA wheel the CUDA headers NCCL process groups compile against,
# and Fashion-MNIST, the fortune files (the lm example's corpus) and the
# plots' font from Debian when apt is available.
# Idempotent: each step runs only when its result is missing, so `make test` can call it every
# time.
set -euo pipefail

TORCH_VERSION="2.13.0"   # the libtorch that tch 0.26 is generated against
# CUDA 13.0's crt/ and CCCL headers, for the CUDA 13.0 build of that torch wheel: its
# nvidia-cuda-runtime 13.0 ships cuda_runtime.h, but not the crt/host_config.h and nv/target
# that cuda_runtime.h and cuda_fp16.h include, which c10d's ProcessGroupNCCL.hpp needs.
CUDA_CRT_VERSION="13.0.88"
CUDA_CCCL_VERSION="13.0.85"
cd "$(dirname "$0")/.."
VENV=.venv

die() { printf '\nbootstrap: %s\n' "$*" >&2; exit 1; }

venv_torch_version() {
  "$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true
}

ensure_python() {
  command -v python3 >/dev/null 2>&1 ||
    die "python3 not found. Install Python 3.10 or newer (Debian: apt-get install python3 python3-venv), or point LIBTORCH at your own libtorch $TORCH_VERSION (see README)."
  python3 - <<'PY' || die "Python 3.10 or newer is needed for the torch $TORCH_VERSION wheel (found $(python3 --version 2>&1))."
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY
}

ensure_libtorch() {
  if [ -n "${LIBTORCH:-}" ] && [ "${LIBTORCH}" != "$PWD/$VENV/libtorch" ]; then
    [ -f "$LIBTORCH/lib/libtorch_cpu.so" ] ||
      die "LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so. Point LIBTORCH at a libtorch $TORCH_VERSION directory, or unset it to use the project's own."
    if [ -f "$LIBTORCH/build-version" ]; then
      local version
      version=$(cut -d+ -f1 < "$LIBTORCH/build-version")
      [ "$version" = "$TORCH_VERSION" ] ||
        die "LIBTORCH=$LIBTORCH is libtorch $version, but tch 0.26 needs $TORCH_VERSION. Install libtorch $TORCH_VERSION, or unset LIBTORCH to use the project's own."
    fi
    echo "bootstrap: using your libtorch at LIBTORCH=$LIBTORCH"
    return
  fi
  local found
  found=$(venv_torch_version)
  if [ "$found" != "$TORCH_VERSION" ]; then
    ensure_python
    if [ ! -x "$VENV/bin/python" ]; then
      echo "bootstrap: creating $VENV"
      python3 -m venv "$VENV" ||
        die "could not create a virtualenv (Debian: apt-get install python3-venv)."
    fi
    echo "bootstrap: installing torch==$TORCH_VERSION into $VENV (a few GB, once)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION" ||
      die "pip could not install torch==$TORCH_VERSION. Check that PyPI is reachable and that the disk has ~6 GB free, then run 'make setup' again."
    found=$(venv_torch_version)
    [ "$found" = "$TORCH_VERSION" ] ||
      die "$VENV has torch '$found' but tch 0.26 needs $TORCH_VERSION. Remove $VENV and run 'make setup' again."
  fi
  local dir
  dir=$("$VENV/bin/python" -c 'import os, torch; print(os.path.relpath(os.path.dirname(torch.__file__), os.path.abspath("'"$VENV"'")))' 2>/dev/null)
  ln -sfn "$dir" "$VENV/libtorch"
}

# Headers only (3 MB), installed beside the wheel's nvidia/cu13/include, where build.rs looks;
# nothing is downloaded at build time. Without them (a CPU wheel, another CUDA version, your own
# LIBTORCH: point CUDA_HOME at a toolkit) the crate builds without NCCL process groups.
ensure_cuda_headers() {
  [ -n "${LIBTORCH:-}" ] && [ "${LIBTORCH}" != "$PWD/$VENV/libtorch" ] && return
  local cuda
  cuda=$(sed -n "s/^cuda: Optional\[str\] = '\([0-9.]*\)'$/\1/p" "$VENV/libtorch/version.py" 2>/dev/null || true)
  [ -n "$cuda" ] || return 0
  if [ "$cuda" != "${CUDA_CRT_VERSION%.*}" ]; then
    echo "bootstrap: note: torch is built for CUDA $cuda, so NCCL process groups are built only with CUDA_HOME set to a CUDA $cuda toolkit" >&2
    return
  fi
  "$VENV/bin/python" - "$CUDA_CRT_VERSION" "$CUDA_CCCL_VERSION" <<'PY' && return
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    found = (version("nvidia-cuda-crt"), version("nvidia-cuda-cccl"))
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if found == tuple(sys.argv[1:]) else 1)
PY
  echo "bootstrap: installing CUDA $cuda's crt and CCCL headers into $VENV (for NCCL process groups)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    "nvidia-cuda-crt==$CUDA_CRT_VERSION" "nvidia-cuda-cccl==$CUDA_CCCL_VERSION" ||
    echo "bootstrap: warning: could not install nvidia-cuda-crt and nvidia-cuda-cccl; the crate builds without NCCL process groups" >&2
}

ensure_fashion_mnist() {
  local data=/usr/share/datasets/fashion-mnist
  [ -d "$data" ] && return
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian's dataset-fashion-mnist"
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) ||
      echo "bootstrap: warning: could not install dataset-fashion-mnist; the quickstart demo needs --data DIR" >&2
  else
    echo "bootstrap: note: $data is missing; install Debian's dataset-fashion-mnist or pass --data DIR to the demo" >&2
  fi
}

# The lm example trains on the fortune files of Debian's fortunes package (2.6 MB of English).
ensure_fortunes() {
  local data=/usr/share/games/fortunes
  # `art` is the full package's (`fortunes` alone comes with fortunes-min, a smaller corpus).
  [ -f "$data/art" ] && return
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian's fortunes (the lm example's corpus)"
    (apt-get install -y -qq fortunes >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fortunes >/dev/null 2>&1; }) ||
      echo "bootstrap: warning: could not install fortunes; the lm example needs --data FILE" >&2
  else
    echo "bootstrap: note: $data is missing; install Debian's fortunes or pass --data FILE to the lm example" >&2
  fi
}

# The examples' plots write their titles and legends in DejaVu Sans; without it they are drawn
# without text.
ensure_plot_font() {
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && return
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Debian's fonts-dejavu-core (for the plots' text)"
    (apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq fonts-dejavu-core >/dev/null 2>&1; }) ||
      echo "bootstrap: note: could not install fonts-dejavu-core; plots will have no text" >&2
  fi
}

ensure_libtorch
ensure_cuda_headers
ensure_fashion_mnist
ensure_fortunes
ensure_plot_font
