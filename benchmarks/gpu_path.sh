#!/usr/bin/env bash
# Issue #17 §6: the GPU path in one go, as run on a lent GPU machine (benchmarks/README.md):
# the GPU tests, HEALNet against its reference on the GPU (fp32, then bf16 autocast), and fits
# in fp32 and bf16 mixed precision against the CPU. Needs a CUDA build of torch with polyfuse's
# dependencies; REFERENCE: a checkout of konst-int-i/healnet at 90459b6 (see
# benchmarks/healnet_reference.py). Arguments: the parts to run (default: all of
# tests healnet large small). Logs go to $OUT (default /tmp/gpu_path).
set -u
out=${OUT:-/tmp/gpu_path}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
parts=${*:-tests healnet large small}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
for part in $parts; do
  case $part in
  tests)
    timeout 180 "$python" -m pytest -p no:cacheprovider -o addopts= -q -p no:warnings \
      tests/models/test_gpu_models.py tests/training/test_gpu_fit.py >"$out/tests.log" 2>&1
    tail -3 "$out/tests.log"
    ;;
  healnet)
    reference=(benchmarks/healnet_reference.py --reference "${REFERENCE:?healnet checkout}")
    reference+=(--device cuda --repeats 20 --tolerance 1e-4)
    timeout 90 "$python" "${reference[@]}" 2>&1 | tee "$out/healnet_fp32.log"
    timeout 60 "$python" "${reference[@]}" --autocast 2>&1 | tee "$out/healnet_bf16.log"
    ;;
  large | small)
    timeout 150 "$python" -W ignore benchmarks/gpu_fit.py --part "$part" 2>&1 |
      tee "$out/fit_$part.log"
    ;;
  esac
done
