# Sourced by the GPU-machine scripts (bench/run_h200.sh, scripts/results/run_h200.sh,
# scripts/dist/run_h200x2.sh): builds the given targets against the LibTorch inside the machine's
# Python torch into build-gpu/ (Release, Ninja, NCCL compiled in when it links, else without), and
# defines the time boxes that let a run end with what finished inside its device-time limit.
# Needs .dev/root: Debian's libpcre2-dev unpacked (the machine has no PCRE2), carried along.
#   source scripts/gpu_common.sh TARGET...     (sets B=build-gpu; returns 1 when the build fails)
#   stage NEED_S NAME...   false (and says so) when fewer than NEED_S of DEADLINE's seconds are left
#   box S CMD...           CMD with a timeout of S seconds, or what is left of DEADLINE if less
T0=${T0:-$(date +%s)}; DEADLINE=${DEADLINE:-540}
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
stage() { local need=$1; shift; if (( $(left) < need )); then echo "skip (time): $*"; return 1; fi; echo "== $* ($(left) s left)"; }
box() { local s=$1; shift; local l; l=$(left); (( s > l )) && s=$l; timeout "$s" "$@"; }
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
GPU_EXTRA=$(pwd)/.dev/root
export JUDGEQ_EXTRA_PREFIX=$GPU_EXTRA
export CPATH=$GPU_EXTRA/usr/include${CPATH:+:$CPATH}
export LIBRARY_PATH=$GPU_EXTRA/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$GPU_EXTRA/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
B=build-gpu
gpu_build() {
  local t0 log=${OUT:-.}/build.log prefix
  t0=$(date +%s)
  prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)') || return 1
  # GIT_COMMIT: the commit of a source copy whose .git is absent or stale.
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DJUDGEQ_BUILD_TESTS=OFF \
    ${GIT_COMMIT:+-DJUDGEQ_GIT_COMMIT=$GIT_COMMIT} \
    >"$log" 2>&1 || { tail -30 "$log"; return 1; }
  if ! cmake --build $B -j"$(nproc)" --target "$@" >>"$log" 2>&1; then
    grep -m10 -E "error" "$log"; echo "build failed; retrying without NCCL"
    cmake -S . -B $B -DJUDGEQ_WITH_NCCL=OFF >>"$log" 2>&1
    cmake --build $B -j"$(nproc)" --target "$@" >>"$log" 2>&1 || { grep -m20 -E "error" "$log"; tail -20 "$log"; return 1; }
  fi
  echo "build: $(( $(date +%s) - t0 )) s, compiler warnings: $(grep -c warning: "$log")"
  grep -q "JUDGEQ_HAVE_NCCL" $B/build.ninja && echo "NCCL: compiled in" || echo "NCCL: not compiled in"
}
gpu_build "$@"
