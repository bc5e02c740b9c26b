#!/usr/bin/env bash
# Installs the Debian 12 packages judgeq needs to build and test on CPU. Idempotent: packages
# already present are skipped, so a second run does nothing.
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-pthread    # fast BLAS behind libblas.so.3 (6 -> 100 GFLOP/s fp32 on 2 cores)
  libsentencepiece-dev sentencepiece
  nlohmann-json3-dev libcli11-dev
  libhdf5-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev            # Unicode regex for the Llama-3 pre-tokenizer
  libcairo2-dev           # PNG/SVG plots
  libgloo-dev             # Gloo headers for LibTorch's c10d: multi-process runs (torchrun) on CPU
  python3                 # scripts/results/summarise.py and its test
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
