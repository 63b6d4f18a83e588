"""Regard's model FLOPs per target token, counted from the model's dimensions, and the matmul ceiling.

Only matrix products are counted (one multiply-add = 2 FLOPs); embedding look-ups,
gate nonlinearities, softmaxes, biases and the optimizer are left out. For a pair
with S source and T target subwords (T counts ``</s>``), with E embedding, h encoder
size per direction, D = 2h encoder output, H decoder size and V target vocabulary:

* encoder, per source subword: 2 directions x GRU (3h x E + 3h x h);
* attention keys ``W h̄_s``, per source subword: D x H;
* bridge, per sentence: D x H;
* decoder, per target step: GRU 3H x (E + H) + 3H x H (input feeding), scores H x S,
  context S x D, ``W_c[c; h]`` (D + H) x H, output H x V.

For the Transformer (``--arch transformer``), with d the model size, f the feed-forward
size and L layers on each side:

* encoder, per source subword and layer: Q, K, V, output 4 d x d, feed-forward 2 d x f;
  self-attention scores and context 2 x S x d;
* cross-attention keys and values, per source subword and decoder layer: 2 d x d;
* decoder, per target step and layer: self-attention 4 d x d and 2 x t x d (t the positions
  so far, causal), cross-attention Q and output 2 d x d and 2 x S x d, feed-forward
  2 d x f; the output layer d x V.

Summed over the training pairs and divided by their target tokens, this gives the
forward cost per real target token; training costs about 3x that (the backward pass
is two products per product). ``executed`` counts what Regard's padded batches
actually compute (every row runs to the batch's longest target, attention spans the
longest source). ``python -m bench.flops ceiling`` times a 1024 x 1024 matmul in fp32
and bf16 on the current thread settings.
"""

from __future__ import annotations

import json
import sys
import time

from bench.batches import Lengths, read_lengths
from bench.configs import TRANSFORMER
from bench.data import Prepared
from regard.data.batching import Example, batch_indices

E, HE, H = 256, 256, 512
D = 2 * HE
CEILING_GFLOPS = 150.0  # the fp32 matrix-product ceiling quoted for this machine (2 threads)


def forward_macs(src_len: int, tgt_steps: int, vocab: int, attend_over: int | None = None) -> int:
    """Multiply-adds of one forward pass over a pair (``attend_over``: source positions scored)."""
    attend = src_len if attend_over is None else attend_over
    encoder = src_len * 2 * (3 * HE * E + 3 * HE * HE)
    keys_and_bridge = attend * D * H + D * H
    per_step = 3 * H * (E + H) + 3 * H * H + attend * (H + D) + (D + H) * H + H * vocab
    return encoder + keys_and_bridge + tgt_steps * per_step


def transformer_macs(src_len: int, tgt_steps: int, vocab: int, attend_over: int | None = None) -> int:
    """Multiply-adds of one Transformer forward pass over a pair (``attend_over``: source positions)."""
    d, f, L = TRANSFORMER["d_model"], TRANSFORMER["ff_size"], TRANSFORMER["layers"]
    attend = src_len if attend_over is None else attend_over
    encoder = L * src_len * (4 * d * d + 2 * d * f + 2 * attend * d)
    cross_kv = L * attend * 2 * d * d
    self_attention = L * 2 * d * tgt_steps * (tgt_steps + 1) // 2
    decoder = tgt_steps * (L * (6 * d * d + 2 * d * f + 2 * attend * d) + d * vocab)
    return encoder + cross_kv + self_attention + decoder


def regard_flops(prep: Prepared, batch_tokens: int = 2000, arch: str = "rnn") -> dict:
    """FLOPs per real target token: forward and training, real and as Regard's padded batches execute them."""
    lengths: Lengths = read_lengths(prep.pieces("train", "en"), prep.pieces("train", "fr"))
    vocab = prep.stats["tgt_vocab"]
    tokens = sum(t + 1 for _, t in lengths)
    macs = forward_macs if arch == "rnn" else transformer_macs
    real = sum(macs(s, t + 1, vocab) for s, t in lengths)
    examples = [Example([0] * s, [0] * t) for s, t in lengths]
    executed = 0
    for idx in batch_indices(examples, batch_tokens, seed=1, epoch=0):
        longest_src = max(lengths[i][0] for i in idx)
        longest_tgt = max(lengths[i][1] for i in idx) + 1
        # the RNN encoder skips padding (packed sequences); the Transformer's computes it
        executed += sum(macs(lengths[i][0] if arch == "rnn" else longest_src, longest_tgt, vocab, longest_src)
                        for i in idx)
    forward = 2 * real / tokens
    return {
        "forward_mflop_per_token": forward / 1e6,
        "train_mflop_per_token": 3 * forward / 1e6,
        "train_mflop_per_token_executed": 3 * 2 * executed / tokens / 1e6,
        "dims": {**({"embedding": E, "encoder_per_direction": HE, "decoder": H} if arch == "rnn" else
                    {k: TRANSFORMER[k] for k in ("d_model", "ff_size", "layers")}), "tgt_vocab": vocab,
                 "mean_src_per_tgt_token": sum(s for s, _ in lengths) / tokens},
        "counted": "matrix products only (2 FLOPs per multiply-add); training = 3 x forward",
    }


def utilisation(flops: dict, train_tok_s: float, ceiling_gflops: float) -> dict:
    """Achieved GFLOP/s in training and its fraction of the quoted and the measured ceiling."""
    achieved = train_tok_s * flops["train_mflop_per_token"] / 1e3
    return {"achieved_gflop_s": achieved, "fraction_of_150": achieved / CEILING_GFLOPS,
            "fraction_of_measured": achieved / ceiling_gflops if ceiling_gflops else None}


def measure_ceiling(size: int = 1024, seconds: float = 2.0) -> dict:
    """GFLOP/s of a ``size``-square matmul in fp32 and bf16 (run in the benchmark's thread settings)."""
    import torch
    torch.set_num_threads(2)
    out = {"size": size, "threads": torch.get_num_threads()}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        for _ in range(3):
            a @ b
        reps, tic = 0, time.perf_counter()
        while time.perf_counter() - tic < seconds:
            a @ b
            reps += 1
        elapsed = time.perf_counter() - tic
        out[str(dtype).replace("torch.", "") + "_gflop_s"] = 2 * size**3 * reps / elapsed / 1e9
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["ceiling"]:
        sys.exit("usage: python -m bench.flops ceiling")
    print(json.dumps(measure_ceiling()))
