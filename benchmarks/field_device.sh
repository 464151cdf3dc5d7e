#!/usr/bin/env bash
# Field codec on a CUDA device, as one prepared run (the device tool's machines are lent briefly):
#   1. encode kodim23 at quality 4 (default effort) with --device cuda, timed;
#   2. decode it with --device cuda and --device cpu, timed, and check the pixels are equal;
#   3. a Kodak sweep (`dappled eval --device cuda -j JOBS`) of the field codec until DEADLINE
#      seconds after the start; eval writes rows as they finish, so a cut sweep keeps its rows
#      and resumes later.
# Usage: OUT=out/dev DATA=path/to/kodak JOBS=12 DEADLINE=500 benchmarks/field_device.sh
# Everything lands in WORK (default OUT/work) and is packed into OUT/field-device.tgz at the end
# (the device tool returns few files). If the encode on the device fails, the sweep falls back to
# the CPU with one job per core, so a lent machine is never wasted.
# Runs from a checkout without installing (python -m dappled); DEVICE=cpu and FIELD_PARAMS
# (extra --param options, e.g. "--param field:iterations=8") make a quick dry run on a CPU.
set -u
OUT=${OUT:-out/field-device}
DATA=${DATA:-../shared/data/kodak}
JOBS=${JOBS:-12}
DEADLINE=${DEADLINE:-500}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
FIELD_PARAMS=${FIELD_PARAMS:-}
EFFORTS=${EFFORTS:-default}
WORK=${WORK:-$OUT/work}
start=$(date +%s)
mkdir -p "$OUT" "$WORK"
finish() { tar czf "$OUT/field-device.tgz" -C "$WORK" . && echo "packed $OUT/field-device.tgz"; }
trap finish EXIT
exec > >(tee "$WORK/run.log") 2>&1
log() { echo "[$(( $(date +%s) - start ))s] $*"; }
dappled() { "$PY" -m dappled "$@"; }

command -v nvidia-smi >/dev/null && nvidia-smi -L
"$PY" -c "import torch, numpy, numba; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__, 'numba', numba.__version__)"

log "encode kodim23 q4 on $DEVICE"
# shellcheck disable=SC2086
TIMEFORMAT="encode: wall %R s, cpu %U+%S s"
time "$PY" -m dappled encode "$DATA/kodim23.png" \
    -o "$WORK/kodim23-q4.dpl" --codec field --quality 4 --device "$DEVICE" --quiet ${FIELD_PARAMS//--param field:/-O } \
    || { log "encode on $DEVICE failed: the sweep runs on the CPU"; SWEEP_DEVICE=cpu; JOBS=$(nproc); }
dappled info "$WORK/kodim23-q4.dpl" | head -20
for dev in "$DEVICE" cpu; do
    log "decode on $dev"
    TIMEFORMAT="decode on $dev: wall %R s (whole process)"
    time "$PY" -m dappled decode "$WORK/kodim23-q4.dpl" \
        -o "$WORK/kodim23-q4-$dev.png" --device "$dev" || log "decode on $dev failed"
done
"$PY" - "$WORK" "$DEVICE" "$DATA" <<'PY'
import sys, time
import numpy as np
from PIL import Image
from dappled.codec.api import decode_image, read_stream
out, dev, data = sys.argv[1:]
a = np.asarray(Image.open(f"{out}/kodim23-q4-{dev}.png"))
b = np.asarray(Image.open(f"{out}/kodim23-q4-cpu.png"))
print("decoded pixels equal across devices:", a.shape == b.shape and bool((a == b).all()))
ref = np.asarray(Image.open(f"{data}/kodim23.png").convert("RGB")).astype(np.float64)
print("PSNR %.3f dB, bpp %.4f" % (10 * np.log10(255**2 / np.mean((ref - b) ** 2)),
      8 * __import__("os").path.getsize(f"{out}/kodim23-q4.dpl") / (ref.shape[0] * ref.shape[1])))
for d in dict.fromkeys([dev, "cpu"]):
    times = []
    for _ in range(5):
        t = time.perf_counter()
        decode_image(read_stream(f"{out}/kodim23-q4.dpl"), device=d)
        times.append(time.perf_counter() - t)
    print(f"decode in process on {d}: min {min(times) * 1e3:.1f} ms over 5 (first {times[0] * 1e3:.1f} ms)")
PY

for effort in $EFFORTS; do
    left=$(( DEADLINE - ($(date +%s) - start) ))
    [ "$left" -gt 30 ] || break
    log "Kodak sweep, effort $effort, $left s left"
    # shellcheck disable=SC2086
    timeout "$left" "$PY" -m dappled eval --dataset "$DATA" --codec field --param field:quality=2,4,6,8 \
        --param "field:effort=$effort" $FIELD_PARAMS --device "${SWEEP_DEVICE:-$DEVICE}" -j "$JOBS" \
        --out "$WORK/kodak-field-$effort" --quiet > "$WORK/eval-$effort.log" 2>&1
    log "sweep $effort exit $?; rows: $(($(wc -l < "$WORK/kodak-field-$effort/results.csv") - 1))"
    tail -5 "$WORK/eval-$effort.log"
done
log done
