#!/usr/bin/env bash
# Issue 15's CIFAR-10 measurements in one GPU lease: the survival table of every default watermark (one process per
# method, all sweep groups), Tang et al.'s transferability matrix on all 50,000 rows, forgery, and the data-use
# audit prototype, side by side on one GPU. Everything writes into benchmarks/results as it goes; every 15 s the
# results and logs are packed into OUT/results.tar.gz, so a run cut off at its deadline still returns what it had.
#
#   DATAMARK_DATA=/path/to/data bash benchmarks/robustness_gpu.sh OUT_DIR [DEADLINE_S] [--smoke]
#
# --smoke runs the same processes on a few hundred rows for one epoch (the code paths, on a CPU, in minutes).
set -u
out=${1:?usage: robustness_gpu.sh OUT_DIR [DEADLINE_S] [--smoke]}
deadline=${2:-500}
smoke=${3:-}
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export DATAMARK_DATA=${DATAMARK_DATA:-$PWD/.gpudata}
mkdir -p "$out" logs
start=$(date +%s)
left() { echo $((deadline - ($(date +%s) - start))); }
pack() { tar czf "$out/.results.tar.gz" benchmarks/results logs 2>/dev/null && mv "$out/.results.tar.gz" "$out/results.tar.gz"; }
(while sleep 15; do pack; done) &
packer=$!

work=runs/robustness_gpu
if [ "$smoke" = --smoke ]; then
  rob=(--train-rows 600 --test-rows 300 --epochs 1 --thief-rows 300 --name robustness_cifar10_gpu_smoke)
  transfer=(--smoke)
  forgery=(--secrets 5 --craft-steps 3 --craft-rows 50 --test-rows 300 --wsr-rows 100
           --name forgery_cifar10_gpu_smoke)
  audit=(--rows 600 --marks 50 --distill-rows 200 --distill-epochs 1 --surrogate-rows 300)
  work=runs/robustness_gpu_smoke
else
  rob=(--thief-rows 20000 --name robustness_cifar10_gpu)
  transfer=(--transfer-rows 50000 --transfer-epochs 15 --name cleanlabel_cifar10_gpu)
  forgery=(--name forgery_cifar10_gpu)
  audit=(--rows 40000 --distill-rows 10000 --distill-epochs 10 --marks 1000)
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > logs/gpu.txt 2>&1

# Independent of the clean model: the transferability matrix and the audit prototype start at once.
timeout "$(left)" python3 benchmarks/cleanlabel_cifar10.py --parts transfer "${transfer[@]}" \
  --work runs/cleanlabel_gpu > logs/transfer.log 2>&1 &
timeout "$(left)" python3 benchmarks/audit_prototype.py --schemes iid lowfreq crafted "${audit[@]}" \
  --work runs/audit_gpu > logs/audit.log 2>&1 &
# The clean model (every method's control and the clean-label base), then one process per method.
timeout "$(left)" python3 benchmarks/robustness_cifar10.py --stage models --methods badnets --work "$work" "${rob[@]}" \
  > logs/models.log 2>&1
for method in badnets badnets-blocks blended blended-mosaic ubw-p clean-label; do
  timeout "$(left)" python3 benchmarks/robustness_cifar10.py --stage all --methods "$method" --work "$work" \
    --attacks query model data training "${rob[@]}" > "logs/robustness-$method.log" 2>&1 &
done
timeout "$(left)" python3 benchmarks/forgery_cifar10.py --model "$work/clean.pt" "${forgery[@]}" \
  > logs/forgery.log 2>&1 &
wait $(jobs -p | grep -v "^$packer$")
kill "$packer" 2>/dev/null
python3 benchmarks/robustness_cifar10.py --stage report "${rob[@]}" --work "$work" > logs/report.log 2>&1
pack
echo "done in $(($(date +%s) - start)) s"; tail -n 3 logs/*.log
