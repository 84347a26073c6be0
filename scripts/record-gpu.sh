#!/usr/bin/env bash
# Records, on a machine with CUDA, the GPU profiles the written analyses show (issues 5 and 8):
# naive against SDPA attention over 512..16384 tokens (bf16, forward and train), LoRA against
# full fine-tuning steps, ResNet-50 against ViT-B/16 over resolutions (inference and training),
# and KV-cache decoding over context lengths. Each lands under profiles/<device>/ with its
# device, dtype, torch and CUDA versions and date; then `make report` puts them in analyses/.
#
#   scripts/record-gpu.sh                      # runs `python3 -m complexo`
#   COMPLEXO=.venv/bin/complexo scripts/record-gpu.sh
#
# Profiling needs torch, typer, rich, sympy and matplotlib, not fvcore. On this project's lent
# GPU machines (whose python3 holds a CUDA torch; at most 8 files come back), run
#   scripts/record-gpu.sh && tar czf "$OUT/gpu-profiles.tgz" profiles/
# then unpack it here, `make report`, and commit profiles/ and analyses/.
#
# A run that cannot fit the GPU is refused by complexo before allocating; it is reported and
# the script goes on. About 5 minutes on an H100.
set -uo pipefail
read -r -a C <<< "${COMPLEXO:-python3 -m complexo}"
failed=0

run() {
    echo "+ complexo $*" >&2
    if ! "${C[@]}" "$@" > /dev/null; then
        echo "  (not recorded: see the line above)" >&2
        failed=$((failed + 1))
    fi
}

"${C[@]}" calibrate --device cuda || { echo "nothing recorded" >&2; exit 1; }
for impl in naive sdpa; do
    for mode in forward train; do
        for seq in 512 1024 2048 4096 8192 16384; do
            run profile mhsa --seq "$seq" --dim 1024 --heads 16 --dtype bf16 --impl "$impl" \
                --mode "$mode" --device cuda --save
        done
    done
done
run profile mhsa --seq 256 --dim 256 --heads 4 --dtype bf16 --device cuda --cuda-graph --save
for model in gpt2 gpt2-medium; do
    run profile lora --model "$model" --device cuda --save
done
for res in 224 384 512; do
    run profile cnn --model resnet50 --res "$res" --device cuda --save
    run profile vit --model vit-b16 --res "$res" --device cuda --save
done
run profile cnn --model resnet50 --res 224 --batch 32 --mode train --device cuda --save
run profile vit --model vit-b16 --res 224 --batch 32 --mode train --device cuda --save
for context in 512 2048 8192; do
    run profile kvcache --model llama-7b --context "$context" --device cuda --save
done
echo "done; $failed run(s) not recorded" >&2
