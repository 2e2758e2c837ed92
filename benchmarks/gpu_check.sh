#!/usr/bin/env bash
# The GPU check, in one command on a machine with a CUDA GPU (about 4 minutes; 6 with --full):
#   1. the CUDA correctness tests (HF_RNN_TEST_DEVICE=cuda: CPU vs GPU logits and tokens, graph-replayed decoding);
#   2. training throughput at the peer shape, hf-rnn with CUDA graphs against its bare PyTorch twin, fp32 (with
#      torch.profiler's costliest operations) and bf16 autocast, then hf-rnn without graphs, fp32;
#   3. time per decoding step, eager against CUDA graphs, greedy and beam 5, fp32 and bf16, input feeding on and off;
#   4. a Multi30k en-de run of train.py: 1,500 steps, or with --full the whole configs/multi30k_en_de.yaml (7,000),
#      batches collated by 4 data-loader workers (on the 2-core CPU machine the config keeps them in the main process).
# The sections run in the order of what a short lease most needs: 1, 2 (graphs, fp32), 3 (fp32), 4, then the rest.
#
#   bash benchmarks/gpu_check.sh [--full] [--data DIR] [--out DIR]
#
# DIR for --data holds train.jsonl, validation.jsonl, test_2016_flickr.jsonl (default ../shared/data/multi30k-en-de).
# Every section runs under its own time limit and the script goes on after a failure; logs go to --out
# (default gpu-check), and the last lines printed are the summary. Exit status 1 if any section failed.
set -uo pipefail

full=0
data=../shared/data/multi30k-en-de
out=${OUT:-gpu-check}
while [ $# -gt 0 ]; do
    case $1 in
        --full) full=1 ;;
        --data) data=$2; shift ;;
        --out) out=$2; shift ;;
        *) echo "gpu_check.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
python=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_RNN_TEST_DEVICE=cuda
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
summary=$out/summary.md
: >"$summary"
failed=0

# section NAME SECONDS COMMAND...: run it with a time limit, its output to the console and NAME.log.
section() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "== $name ($(date +%T), limit ${limit}s): $*"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    local status=${PIPESTATUS[0]}
    echo "- $name: exit $status after $((SECONDS - started)) s" >>"$summary"
    [ "$status" = 0 ] || failed=1
}

"$python" - <<'EOF' | tee "$out/machine.txt"
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
EOF

section tests 180 "$python" -m pytest -q -p no:cacheprovider tests/test_cuda_graphs.py
section train_step_graphs 180 "$python" benchmarks/train_step.py --device cuda --cuda-graphs --steps 20 --rounds 4 \
    --warmup 3 --profile 12
section decode_step_fp32 90 "$python" benchmarks/decode_step.py --device cuda --profile 15
steps=1500
[ "$full" = 1 ] && steps=7000
run_dir=$(mktemp -d)
section "multi30k_${steps}_steps" 420 "$python" train.py configs/multi30k_en_de.yaml \
    --train_file "$data/train.jsonl" --validation_file "$data/validation.jsonl" \
    --test_file "$data/test_2016_flickr.jsonl" --output_dir "$run_dir/multi30k" --max_steps "$steps" \
    --report_to none --dataloader_num_workers 4 --dataloader_persistent_workers true

section train_step_graphs_bf16 150 "$python" benchmarks/train_step.py --device cuda --cuda-graphs --bf16 --steps 20 \
    --rounds 4 --warmup 3
section train_step_eager 150 "$python" benchmarks/train_step.py --device cuda --steps 20 --rounds 4 --warmup 3
section decode_step_bf16 90 "$python" benchmarks/decode_step.py --device cuda --dtype bfloat16
section decode_step_no_feeding 90 "$python" benchmarks/decode_step.py --device cuda --input-feeding off

{
    echo
    echo "## Tables"
    cat "$out/machine.txt"
    for name in train_step_graphs train_step_graphs_bf16 train_step_eager decode_step_fp32 decode_step_bf16 \
        decode_step_no_feeding; do
        echo "### $name"
        grep -E '^\|' "$out/$name.log" || echo "(no table: see $name.log)"
    done
    echo "### multi30k, $steps steps"
    grep -E "train_runtime|train_steps_per_second|bleu|chrf|wall_seconds" "$out/multi30k_${steps}_steps.log" | tail -12
} >>"$summary"
echo
cat "$summary"
exit $failed
