#!/usr/bin/env bash
# One short check of Regard on a GPU (under 8 minutes on a fresh machine that has a Python and a
# CUDA build of PyTorch): train the Multi30k recipe for a few hundred steps on one GPU in mixed
# precision (bf16 where the GPU supports it, else fp16 with a gradient scaler), translate
# test_2016_flickr with beam 5, and print training tokens/s, sentences/s, peak GPU memory and BLEU.
#
#   scripts/gpu_check.sh [DATA_DIR] [STEPS]       # DATA_DIR holds multi30k/ (default ../shared/data)
#
# Regard's other dependencies are installed with pip if they are missing (from $REGARD_WHEELS, a
# folder of wheels, when the machine has no package index). Results go to $OUT (or /tmp/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
STEPS=${2:-400}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"
if ! "$PY" -c "import sentencepiece, sacrebleu, safetensors, yaml, tqdm" 2>/dev/null; then
  if [ -n "${REGARD_WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/regard-site "$REGARD_WHEELS"/*.whl
    export PYTHONPATH=/tmp/regard-site${PYTHONPATH:+:$PYTHONPATH}
  else
    "$PY" -m pip install -q sentencepiece sacrebleu safetensors PyYAML tqdm
  fi
fi

PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 "$PY" - "$DATA" "$STEPS" "$OUT" <<'EOF'
import json, shutil, sys, time
from pathlib import Path

import sacrebleu, torch

from regard.config import load_config
from regard.data.text import read_lines
from regard.training.trainer import train
from regard.translator import Translator

data, steps, out = Path(sys.argv[1]) / "multi30k", int(sys.argv[2]), Path(sys.argv[3])
cfg = load_config("recipes/multi30k-en-fr.yaml", [
    f"data.train_src={data / 'train.en'}", f"data.train_tgt={data / 'train.fr'}",
    f"data.valid_src={data / 'val.en'}", f"data.valid_tgt={data / 'val.fr'}",
    "train.device=cuda", "train.precision=mixed", f"train.max_steps={steps}", f"train.eval_every={steps}",
    f"train.out_dir={out / 'run'}", "train.max_minutes=0", "train.log_every=50", "train.workers=1"])
shutil.rmtree(out / "run", ignore_errors=True)
tic = time.time()
run = train(cfg)
train_s = time.time() - tic
row = (run / "log.csv").read_text().splitlines()[-1].split(",")
peak_train = torch.cuda.max_memory_allocated() / 2**20
torch.cuda.reset_peak_memory_stats()

sources = list(read_lines(data / "test_2016_flickr.en"))
refs = list(read_lines(data / "test_2016_flickr.fr"))
translator = Translator.load(run / "best", device="cuda", precision="bf16" if torch.cuda.is_bf16_supported() else "fp32")
translator.translate(sources[:64], beam=5)  # warm-up
torch.cuda.synchronize()
tic = time.time()
hyps = translator.translate(sources, beam=5)
torch.cuda.synchronize()
seconds = time.time() - tic
bleu = sacrebleu.corpus_bleu([h.text for h in hyps], [refs])
result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "steps": steps,
          "train_seconds": round(train_s, 1), "train_tok_s_last_interval": float(row[4]),
          "train_peak_gpu_mib": round(peak_train), "translate_sent_s_beam5": round(len(sources) / seconds, 1),
          "translate_peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20),
          "bleu_beam5": round(bleu.score, 2), "valid_bleu_greedy": float(row[6])}
print(json.dumps(result, indent=2))
(out / "gpu_check.json").write_text(json.dumps(result, indent=2))
EOF
