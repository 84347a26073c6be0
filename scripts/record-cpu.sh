#!/usr/bin/env bash
# Records the CPU profiles the written analyses show beside the GPU ones (profiles/<this CPU>/):
# naive against SDPA attention over 512..4096 tokens (fp32, forward; train at 1024), LoRA against
# full fine-tuning steps on gpt2, ResNet-50 against ViT-B/16 at 224 (inference; training at
# batch 4), KV-cache decoding on gpt2 at 128 and 1023 cached tokens, and the profiled MHSA sweep. Each
# lands with its device, dtype, torch version and date; then `make report` puts them in
# analyses/. Sizes are chosen for a small CPU: about 4 minutes on this project's 2-core box.
#
#   scripts/record-cpu.sh                      # runs .venv/bin/complexo (make .venv first)
#   COMPLEXO="python3 -m complexo" scripts/record-cpu.sh
default=".venv/bin/complexo"
source "$(dirname "$0")/record-lib.sh"

calibration=$("${C[@]}" calibrate --device cpu) || { echo "nothing recorded" >&2; exit 1; }
echo "$calibration" >&2
folder=$(dirname "$(sed -n 's/^saved to //p' <<< "$calibration")")
for impl in naive sdpa; do
    for seq in 512 1024 2048 4096; do
        run profile mhsa --seq "$seq" --dim 512 --heads 8 --impl "$impl" --device cpu --save
    done
    run profile mhsa --seq 1024 --dim 512 --heads 8 --impl "$impl" --mode train --device cpu --save
done
run profile lora --model gpt2 --seq 128 --precision fp32 --device cpu --save
run profile cnn --model resnet50 --res 224 --device cpu --save
run profile vit --model vit-b16 --res 224 --device cpu --save
run profile cnn --model resnet50 --res 224 --batch 4 --mode train --repeat 5 --device cpu --save
run profile vit --model vit-b16 --res 224 --batch 4 --mode train --repeat 5 --device cpu --save
for context in 128 1023; do  # gpt2 has 1024 positions
    run profile kvcache --model gpt2 --context "$context" --dtype fp32 --device cpu --save
done
echo "+ complexo sweep mhsa ... --profile" >&2
"${C[@]}" sweep mhsa --vary seq=128..4096 --log2 --dim 256 --heads 4 --profile --device cpu \
    --json --plot "$folder/mhsa-sweep-timed.png" > "$folder/mhsa-sweep-timed.json" \
    || failed=$((failed + 1))
echo "done; $failed step(s) failed or not recorded" >&2
