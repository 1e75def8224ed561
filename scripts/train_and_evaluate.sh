#!/usr/bin/env bash
# The whole path from experts to the shipped model and its comparisons, as run for models/ (2-core CPU).
# Every step resumes or skips what is already done, so the script can be re-run after an interruption.
#
#   bash scripts/train_and_evaluate.sh            # all steps
#   SEEDS=4 COMPARE_SEEDS=2 bash scripts/train_and_evaluate.sh
#
# Training the three models takes ~75 min with two of them side by side (one core each); the evaluations
# another ~40 min. On a GPU machine, set `device: cuda` in the presets (or use train_paper).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SEEDS=${SEEDS:-4}                 # shipped model: 30 scenarios x 4 seeds = 120 randomized 20 s episodes
COMPARE_SEEDS=${COMPARE_SEEDS:-2} # baselines and ablations
MODEL=models/diffuseloco_cyberdog2_preview.onnx   # the default name once a model meets the targets

[ -d data/experts.zarr ] || $PY -m diffuseloco_policy.data.generate --out data/experts.zarr \
    --transitions 1000000 --seed 0 --workers 2

# 1. Train: the shipped diffusion policy and its current-frame ablation in parallel, then the MLP baseline.
$PY -m diffuseloco_policy.training --config train_small --resume auto --no-progress &
$PY -m diffuseloco_policy.training --config train_small_current_frame --resume auto --no-progress &
wait
$PY -m diffuseloco_policy.training --config train_mlp --resume auto --no-progress

# 2. Export the EMA weights (full sampler + 2-step warm start; verified against torch to 1e-4).
$PY -m diffuseloco_policy.training.export --checkpoint out/train_small/ckpt_latest --out $MODEL
$PY -m diffuseloco_policy.training.export --checkpoint out/train_small_current_frame/ckpt_latest \
    --out out/models/current_frame.onnx
$PY -m diffuseloco_policy.training.export --checkpoint out/train_mlp/ckpt_latest --out out/models/mlp.onnx

# 3. Evaluate on the default matrix (same physics per seed for every policy), two processes at a time.
evaluate() {  # out_dir seeds policy-spec [more evaluation args]
    local out=$1 seeds=$2
    shift 2
    [ -f "$out/results.json" ] || $PY -m diffuseloco_policy.evaluation --scenarios eval_default --seeds "$seeds" \
        --out "$out" --policy "$@" > "$out.log" 2>&1
}
mkdir -p out/eval
evaluate out/eval/diffusion "$SEEDS" "$MODEL,warm=2,label=diffusion" &
evaluate out/eval/expert "$COMPARE_SEEDS" expert &
wait
evaluate out/eval/mlp "$COMPARE_SEEDS" "out/models/mlp.onnx,label=mlp_bc" &
evaluate out/eval/current_frame "$COMPARE_SEEDS" "out/models/current_frame.onnx,warm=2,label=diffusion_current_frame" &
wait
evaluate out/eval/open_loop "$COMPARE_SEEDS" "$MODEL,warm=2,label=diffusion" --ablation open_loop_chunk &
evaluate out/eval/full_sampler "$COMPARE_SEEDS" "$MODEL,label=diffusion_full_sampler" &
wait
$PY -m diffuseloco_policy.evaluation.merge out/eval/diffusion out/eval/full_sampler out/eval/expert out/eval/mlp \
    out/eval/current_frame out/eval/open_loop --out docs/policy_eval

# 4. The model card (hashes, data, training, the shipped model's evaluation) beside the model.
$PY -m diffuseloco_policy.training.model_card --model $MODEL --run out/train_small --dataset data/experts.zarr \
    --eval out/eval/diffusion/results.json --notes models/diffuseloco_cyberdog2_preview.notes.md
