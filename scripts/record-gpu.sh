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
default="python3 -m complexo"
source "$(dirname "$0")/record-lib.sh"

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
# complexo's CUDA-event timer against triton.testing.do_bench on a large bf16 matrix product
# (they must agree within 5%), kept beside the profiles; then the CUDA-marked tests.
python3 - <<'PY' || failed=$((failed + 1))
import json, statistics
from pathlib import Path

import torch
from triton.testing import do_bench

from complexo import profile as profiling

a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
clock = profiling.timer("cuda")
for _ in range(3):
    a @ a
ours = statistics.median(clock(lambda: a @ a) for _ in range(20))
theirs = do_bench(lambda: a @ a) / 1e3
doc = {"complexo_timer_s": ours, "triton_do_bench_s": theirs, "difference": ours / theirs - 1,
       "shape": [8192, 8192, 8192], "dtype": "bf16", "torch": torch.__version__,
       "device": profiling.device_name("cuda")}
folder = Path("profiles") / profiling.slug(doc["device"])
(folder / "timer-check.json").write_text(json.dumps(doc, indent=2) + "\n")
print(f"timer: complexo {ours * 1e3:.3f} ms, triton do_bench {theirs * 1e3:.3f} ms "
      f"({doc['difference']:+.2%})")
PY
python3 -m pytest -q -m cuda tests/test_profile.py || failed=$((failed + 1))
echo "done; $failed step(s) failed or not recorded" >&2
