"""One model, three configs: Regard's dataclasses, a Joey NMT YAML and an OpenNMT-py YAML.

The shared RNN model (``--arch rnn``): embeddings 256, a 1-layer bidirectional GRU encoder
of 256 per direction, a 1-layer GRU decoder of 512, ``general`` (bilinear) attention with
input feeding, dropout 0.2, uniform ±0.1 initialisation, Adam at a constant 1e-3, label
smoothing 0.1, gradient-norm clipping at 1.0, batches of about 2,000 target tokens,
2 threads.

The shared Transformer (``--arch transformer``, Regard and OpenNMT-py only): pre-layer-norm,
sinusoidal positions, 3 encoder and 3 decoder layers of 256 with 4 heads and feed-forward
blocks of 1,024, dropout and attention dropout 0.1, the output layer tied to the target
embeddings, Xavier-uniform initialisation, Adam(0.9, 0.999) with a linear warm-up over 2,000
steps to 1e-3 and then the inverse square root (OpenNMT-py's ``noam`` with the learning rate
scaled to the same peak), the same clipping, smoothing, batches and threads.

Where a toolkit cannot say a setting exactly, :data:`NOTES` says what it uses instead; the
notes are printed and written to ``peers.json``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.data import Prepared, recipe_config
from regard.config import Config, DataConfig, ModelConfig, SearchConfig, TrainConfig

THREADS = 2
REGARD_WORKERS = 2  # Regard trains with 2 processes of 1 thread (train.workers); the peers with 1 of 2 threads
BATCH_TOKENS = 2000
LOG_EVERY = 10  # peers log every 10 steps; Regard's step times are grouped the same way
TRANSLATE_BATCH = 128  # sentences per translation batch, for every system (Regard's default)
TRANSLATE_WORKERS = 2  # Regard translates with 2 processes of 1 thread (regard.pool); the peers with 1 of 2 threads
BEAM_STOPPING = "exact"  # Regard's beam-search stopping rule in the benchmark
NEVER = 10**9  # a validation interval that is never reached
ARCHS = ("rnn", "transformer")
TRANSFORMER = {"d_model": 256, "heads": 4, "ff_size": 1024, "layers": 3, "dropout": 0.1, "attention_dropout": 0.1,
               "lr": 1e-3, "warmup_steps": 2000}

SETTINGS = {
    "embedding": 256, "encoder": "1-layer bidirectional GRU, 256 per direction", "decoder": "1-layer GRU, 512",
    "attention": "general (bilinear), input feeding", "dropout": 0.2, "init": "uniform(-0.1, 0.1)",
    "optimizer": "Adam(0.9, 0.999), lr 1e-3 constant", "label_smoothing": 0.1, "clip_norm": 1.0,
    "batch": f"about {BATCH_TOKENS} tokens", "threads": THREADS, "beam_length_penalty": "GNMT alpha 1.0",
    "translation_batch": TRANSLATE_BATCH,
}
TRANSFORMER_SETTINGS = {
    "model": "Transformer, pre-layer-norm, sinusoidal positions", "layers": f"{TRANSFORMER['layers']} + "
    f"{TRANSFORMER['layers']}", "d_model": TRANSFORMER["d_model"], "heads": TRANSFORMER["heads"],
    "ff_size": TRANSFORMER["ff_size"], "dropout": TRANSFORMER["dropout"],
    "attention_dropout": TRANSFORMER["attention_dropout"], "tied_output": True, "init": "xavier_uniform",
    "optimizer": f"Adam(0.9, 0.999), linear warm-up over {TRANSFORMER['warmup_steps']} steps to "
                 f"{TRANSFORMER['lr']:g}, then inverse square root",
    "label_smoothing": 0.1, "clip_norm": 1.0, "batch": f"about {BATCH_TOKENS} tokens", "threads": THREADS,
    "beam_length_penalty": "GNMT alpha 1.0", "translation_batch": TRANSLATE_BATCH,
}
SETTINGS_OF = {"rnn": SETTINGS, "transformer": TRANSFORMER_SETTINGS}  # by --arch

NOTES = {
    "regard": [
        "training: train.workers 2, i.e. 2 DistributedDataParallel processes of 1 thread (gradients averaged in shared memory), each computing "
        "the gradient of half of every batch; peak RSS adds the second process's to the first's",
        "translation batch: 128 sentences (x beam hypotheses), sorted by length; a sentence leaves the batch "
        "when its search is over",
        "translation: 2 processes of 1 thread (regard.pool.TranslatorPool), each taking the next batch; the same "
        "translations as one process; model loading is not timed, as for the peers",
        "max output: 2 x source subwords + 4 per sentence",
        "trains its SentencePiece models itself from the cleaned text (identical bytes to the peers' pieces)",
    ],
    "regard-bf16": ["as regard, with train.precision: bf16 (bfloat16 autocast, fp32 master weights)"],
    "joeynmt": [
        "decoder type: recurrent; attention: luong (= general/bilinear); bridge tanh(W h) as Regard",
        "constant lr via scheduling: exponential with decrease_factor 1.0 (the plateau scheduler breaks)",
        "uniform 0.1 init for weights, embeddings and biases (Joey's xavier default learns several times slower)",
        "output layer has no bias (Regard's has one); dropout also on the attentional-layer input (hidden_dropout)",
        "max output: 1.5 x the longest source of the batch (Joey's default; it has no per-sentence ratio)",
        "translate -o FILE crashes (AttributeError: 'BaseConfig' has no 'n_best'), so translations are read "
        "from stdout",
    ],
    "opennmt-py": [
        "encoder_type brnn with enc_hid_size 512 (= 256 per direction), rnn_type GRU, input_feed 1",
        "bridge: true is Linear + ReLU (Regard and Joey: tanh)",
        "max output: min(250, 2 x longest source of the batch + 5) via max_length_ratio 2.0",
        "checkpoints load only with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 on torch 2.13",
        "num_workers 0 (its default 2 would add data-loader processes and cores)",
    ],
}


TRANSFORMER_NOTES = {
    "regard": NOTES["regard"],
    "regard-bf16": NOTES["regard-bf16"],
    "opennmt-py": [
        "encoder_type / decoder_type transformer, position_encoding (SinusoidalInterleaved, as Regard's), "
        "share_decoder_embeddings (the tied output layer)",
        "self_attn_type scaled-dot-flash (its default: PyTorch's scaled_dot_product_attention, as Regard's); "
        "add_qkvbias and add_ffnbias (biases in every linear layer, as Regard's); layer-norm epsilon 1e-5 (Regard's)",
        "decay_method noam with learning_rate = peak x sqrt(d_model x warmup): the same schedule as Regard's "
        "inverse_sqrt",
        "param_init 0 with param_init_glorot (Xavier uniform); its embeddings get Xavier too (Regard: N(0, 1/d))",
        *NOTES["opennmt-py"][2:],
    ],
}
NOTES_OF = {"rnn": NOTES, "transformer": TRANSFORMER_NOTES}  # by --arch


BATCH_RULES = {
    "regard": "train.batch_tokens {size}: sentences x (longest target + 1) <= {size}, sorted by target length",
    "joeynmt": "batch_type token, batch_size {size}: sentences x max(src+1, trg+1) >= {size} closes a batch, "
               "sentences in random order (no length bucketing, so much padding)",
    "opennmt-py": "batch_type tokens, batch_size {size}: sentences x max(src, tgt+2) <= {size}, "
                  "sorted by source then target length",
}


def batch_note(name: str, size: int, expected_tokens: int) -> str:
    """How ``name`` forms its batches of ``size``, and why that size when it is not the literal 2000."""
    note = "batches: " + BATCH_RULES["regard" if name.startswith("regard") else name].format(size=size)
    if size != BATCH_TOKENS:
        note += f"; {size} gives ~{expected_tokens} real target tokens per batch, as Regard's {BATCH_TOKENS} do"
    return note


def regard_model(arch: str) -> ModelConfig:
    """The benchmark's model of architecture ``arch``."""
    if arch == "transformer":
        t = TRANSFORMER
        return ModelConfig(arch="transformer", d_model=t["d_model"], heads=t["heads"], ff_size=t["ff_size"],
                           encoder_layers=t["layers"], decoder_layers=t["layers"], dropout=t["dropout"],
                           attention_dropout=t["attention_dropout"], tied_embeddings=True)
    return ModelConfig(rnn="gru", embedding_size=256, encoder_hidden=256, encoder_layers=1, bidirectional=True,
                       decoder_hidden=512, decoder_layers=1, attention="general", input_feeding=True,
                       dropout=0.2, init_range=0.1)


def regard_config(prep: Prepared, out_dir: Path, steps: int, precision: str = "fp32",
                  eval_every: int = NEVER, arch: str = "rnn") -> Config:
    """Regard's config for this benchmark (tokenizer and data filters from its Multi30k recipe)."""
    stats = prep.stats
    schedule = {"lr": 1e-3, "schedule": "constant"} if arch == "rnn" else {
        "lr": TRANSFORMER["lr"], "schedule": "inverse_sqrt", "warmup_steps": TRANSFORMER["warmup_steps"]}
    return Config(
        data=DataConfig(train_src=str(prep.clean("en")), train_tgt=str(prep.clean("fr")),
                        valid_src=str(prep.original("val", "en")), valid_tgt=str(prep.original("val", "fr")),
                        max_len=stats["max_len"], valid_max_sentences=20),
        tokenizer=recipe_config().tokenizer,
        model=regard_model(arch),
        search=SearchConfig(beam=5, length_penalty=1.0, max_ratio=2.0),
        train=TrainConfig(out_dir=str(out_dir), seed=1, threads=THREADS // REGARD_WORKERS, workers=REGARD_WORKERS,
                          batch_tokens=BATCH_TOKENS,
                          max_steps=steps, **schedule, clip_norm=1.0, label_smoothing=0.1,
                          precision=precision, eval_every=min(eval_every, steps), eval_beam=1),
    )


def joey_config(prep: Prepared, model_dir: Path, steps: int, dev_prefix: Path, beam: int = 1,
                load_model: Path | None = None) -> dict:
    """Joey NMT 2.3 config: training into ``model_dir`` for ``steps`` updates, translation with ``beam``."""
    side = lambda lang: {"lang": lang, "level": "word", "lowercase": False, "max_length": -1,  # noqa: E731
                         "voc_file": str(prep.vocab(lang))}
    embeddings = {"embedding_dim": 256, "scale": False, "dropout": 0.2}
    testing = {"beam_size": beam, "beam_alpha": 1.0 if beam > 1 else -1, "batch_size": TRANSLATE_BATCH,
               "batch_type": "sentence", "eval_metrics": ["bleu"]}
    if load_model:
        testing["load_model"] = str(load_model)
    return {
        "name": "regard-bench", "joeynmt_version": "2.3.0", "model_dir": str(model_dir),
        "use_cuda": False, "num_workers": 0, "random_seed": 1,
        "data": {"train": str(prep.folder / "train"), "dev": str(dev_prefix), "dataset_type": "plain",
                 "src": side("en"), "trg": side("fr")},
        "testing": testing,
        "training": {
            "optimizer": "adam", "adam_betas": [0.9, 0.999], "learning_rate": 1e-3, "learning_rate_min": 1e-8,
            "scheduling": "exponential", "decrease_factor": 1.0, "batch_size": BATCH_TOKENS,
            "batch_type": "token", "normalization": "tokens", "label_smoothing": 0.1, "clip_grad_norm": 1.0,
            "epochs": 1000, "updates": steps, "validation_freq": NEVER, "logging_freq": LOG_EVERY,
            "shuffle": True, "overwrite": True, "keep_best_ckpts": 1, "early_stopping_metric": "loss",
            "print_valid_sents": [],
        },
        "model": {
            "initializer": "uniform", "init_weight": 0.1, "embed_initializer": "uniform", "embed_init_weight": 0.1,
            "bias_initializer": "uniform", "bias_init_weight": 0.1, "tied_embeddings": False, "tied_softmax": False,
            "encoder": {"type": "recurrent", "rnn_type": "gru", "embeddings": embeddings, "hidden_size": 256,
                        "bidirectional": True, "dropout": 0.2, "num_layers": 1},
            "decoder": {"type": "recurrent", "rnn_type": "gru", "embeddings": embeddings, "hidden_size": 512,
                        "dropout": 0.2, "hidden_dropout": 0.2, "num_layers": 1, "input_feeding": True,
                        "init_hidden": "bridge", "attention": "luong"},
        },
    }


def onmt_model(arch: str) -> dict:
    """OpenNMT-py 3.5's options for the benchmark's model, optimizer and schedule of architecture ``arch``."""
    if arch == "rnn":
        return {
            "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "GRU",
            "enc_layers": 1, "dec_layers": 1, "enc_hid_size": 512, "dec_hid_size": 512, "word_vec_size": 256,
            "global_attention": "general", "input_feed": 1, "bridge": True, "dropout": [0.2], "dropout_steps": [0],
            "param_init": 0.1, "optim": "adam", "learning_rate": 1e-3, "adam_beta1": 0.9, "adam_beta2": 0.999,
            "decay_method": "none", "learning_rate_decay": 1.0,
        }
    t = TRANSFORMER
    return {
        "encoder_type": "transformer", "decoder_type": "transformer", "enc_layers": t["layers"],
        "dec_layers": t["layers"], "hidden_size": t["d_model"], "word_vec_size": t["d_model"], "heads": t["heads"],
        "transformer_ff": t["ff_size"], "position_encoding": True, "position_encoding_type": "SinusoidalInterleaved",
        "max_relative_positions": 0, "self_attn_type": "scaled-dot-flash", "layer_norm": "standard",
        "norm_eps": 1e-5, "add_qkvbias": True, "add_ffnbias": True,
        "pos_ffn_activation_fn": "relu", "share_decoder_embeddings": True, "dropout": [t["dropout"]],
        "attention_dropout": [t["attention_dropout"]], "dropout_steps": [0], "param_init": 0.0,
        "param_init_glorot": True, "optim": "adam", "adam_beta1": 0.9, "adam_beta2": 0.999, "decay_method": "noam",
        "warmup_steps": t["warmup_steps"], "learning_rate": t["lr"] * (t["d_model"] * t["warmup_steps"]) ** 0.5,
    }


def onmt_train_config(prep: Prepared, work: Path, steps: int, save_every: int | None = None,
                      arch: str = "rnn") -> dict:
    """OpenNMT-py 3.5 training config (``onmt_train -config``)."""
    return {
        "save_data": str(work / "onmt"), "overwrite": True,
        "src_vocab": str(prep.vocab("en")), "tgt_vocab": str(prep.vocab("fr")),
        "src_vocab_size": prep.stats["src_vocab"], "tgt_vocab_size": prep.stats["tgt_vocab"],
        "vocab_size_multiple": 1, "share_vocab": False,
        "data": {"corpus_1": {"path_src": str(prep.pieces("train", "en")),
                              "path_tgt": str(prep.pieces("train", "fr")), "transforms": []}},
        "save_model": str(work / "model"), "save_checkpoint_steps": save_every or steps, "keep_checkpoint": 1,
        "train_steps": steps, "valid_steps": NEVER, "report_every": LOG_EVERY, "seed": 1,
        "world_size": 1, "gpu_ranks": [], "num_workers": 0, "model_dtype": "fp32",
        "model_type": "text", **onmt_model(arch), "max_grad_norm": 1.0, "label_smoothing": 0.1,
        "batch_type": "tokens", "batch_size": BATCH_TOKENS, "normalization": "tokens", "accum_count": [1],
    }


def onmt_translate_args(model: Path, src: Path, out: Path, beam: int) -> list[str]:
    """``onmt_translate`` arguments: CPU, GNMT length penalty, length limit 2 x source + 5."""
    return ["-model", str(model), "-src", str(src), "-output", str(out), "-beam_size", str(beam),
            "-batch_size", str(TRANSLATE_BATCH), "-batch_type", "sents", "-length_penalty", "wu", "-alpha", "1.0",
            "-max_length_ratio", "2.0", "-report_time", "-gpu", "-1"]


def write_yaml(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
