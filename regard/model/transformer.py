"""The Transformer encoder–decoder (Vaswani et al. 2017) with pre-layer-norm (``model.arch: transformer``).

Each sublayer reads a layer-normalised copy of its input and adds its output back::

    encoder layer:  x += SelfAttn(LN(x));  x += FF(LN(x))                      then LN at the top
    decoder layer:  y += CausalSelfAttn(LN(y));  y += CrossAttn(LN(y), enc);  y += FF(LN(y))

Embeddings are scaled by √D and summed with sinusoidal positions; the source and target may
share one embedding table, and the output layer may share the target's. In search each
decoder layer keeps its earlier positions' self-attention keys and values per hypothesis
(:class:`TransformerState`), and the cross-attention keys and values of the encoder output
once per sentence, so a step costs one position, not the whole prefix.

Shapes: B sentences, S source and T target length, D ``d_model``, H heads, L decoder layers,
N decoder rows in search (B × G hypotheses), V target vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from regard.config import ModelConfig
from regard.data.batching import Batch
from regard.data.tokenizer import PAD
from regard.errors import RegardError
from regard.model.base import EncoderDecoder
from regard.model.multihead import CrossAttention, FeedForward, SelfAttention, sinusoids

KV = tuple[torch.Tensor, torch.Tensor]  # keys and values, each (·, H, ·, D/H)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attention = SelfAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ff = FeedForward(cfg.d_model, cfg.ff_size, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, 1, S) → (B, S, D)."""
        x = x + self.dropout(self.attention(self.norm1(x), mask))
        return x + self.dropout(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.self_attention = SelfAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.cross_attention = CrossAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.ff = FeedForward(cfg.d_model, cfg.ff_size, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor, memory: KV, mask: torch.Tensor,
                weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: y (B, T, D) → (B, T, D) and, with ``weights``, cross-attention (B, H, T, S)."""
        y = y + self.dropout(self.self_attention(self.norm1(y), causal=True))
        return self.cross_and_ff(y, memory, mask, weights)

    def step(self, y: torch.Tensor, cache: KV, memory: KV, mask: torch.Tensor,
             weights: bool = False) -> tuple[torch.Tensor, KV, torch.Tensor | None]:
        """One position per row: y (N, 1, D), the rows' cache → (N, 1, D), the longer cache and,
        with ``weights``, cross-attention (N, H, S)."""
        context, cache = self.self_attention.step(self.norm1(y), cache)
        y = y + context
        B = mask.shape[0]
        N, _, D = y.shape
        y, attention = self.cross_and_ff(y.view(B, N // B, D), memory, mask, weights)  # G queries per sentence
        if attention is not None:
            attention = attention.transpose(1, 2).reshape(N, attention.shape[1], -1)
        return y.view(N, 1, D), cache, attention

    def cross_and_ff(self, y: torch.Tensor, memory: KV, mask: torch.Tensor,
                     weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        context, attention = self.cross_attention(self.norm2(y), *memory, mask, weights)
        y = y + self.dropout(context)
        return y + self.dropout(self.ff(self.norm3(y))), attention


@dataclass
class TransformerState:
    """Between search steps.

    cache: per decoder layer, the self-attention keys and values of the positions decoded so
        far, (N, H, t, D/H) each (per row)
    memory: per decoder layer, the cross-attention keys and values, (B, H, S, D/H) each (per sentence)
    mask: (B, 1, 1, S) True at real source tokens (per sentence)
    position: t, the position of the next step
    attention: what :meth:`Transformer.step` returns: ``layer``, ``heads`` or ``none``
    """

    cache: list[KV]
    memory: list[KV]
    mask: torch.Tensor
    position: int
    attention: str

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> TransformerState:
        cache = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.cache]
        memory, mask = self.memory, self.mask
        if sentences is not None:
            memory = [(k.index_select(0, sentences), v.index_select(0, sentences)) for k, v in memory]
            mask = mask.index_select(0, sentences)
        return TransformerState(cache, memory, mask, self.position, self.attention)


class Transformer(EncoderDecoder):
    """Pre-layer-norm Transformer with sinusoidal positions."""

    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int):
        super().__init__()
        if cfg.shared_embeddings and src_vocab != tgt_vocab:
            raise RegardError(f"model.shared_embeddings needs source and target vocabularies of one size, "
                              f"got {src_vocab} and {tgt_vocab} (set tokenizer.src_vocab_size = tgt_vocab_size)")
        self.cfg = cfg
        self.scale = math.sqrt(cfg.d_model)
        self.src_embed = nn.Embedding(src_vocab, cfg.d_model, padding_idx=PAD)
        self.tgt_embed = self.src_embed if cfg.shared_embeddings else nn.Embedding(tgt_vocab, cfg.d_model,
                                                                                    padding_idx=PAD)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.output = nn.Linear(cfg.d_model, tgt_vocab)
        self.dropout = nn.Dropout(cfg.dropout)
        self.reset_parameters()
        if cfg.tied_embeddings:
            self.output.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices, zero biases, embeddings N(0, 1/D) (× √D at use), padding 0."""
        for name, p in self.named_parameters():
            if "embed" in name:
                nn.init.normal_(p, 0.0, self.cfg.d_model ** -0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif "norm" not in name:
                nn.init.zeros_(p)
        with torch.no_grad():
            self.src_embed.weight[PAD].zero_()
            self.tgt_embed.weight[PAD].zero_()

    @property
    def attention_layer(self) -> int:
        return (self.cfg.attention_layer or len(self.decoder_layers)) - 1

    def embed(self, ids: torch.Tensor, table: nn.Embedding, start: int = 0) -> torch.Tensor:
        """ids (B, T) → √D · embedding + positions start … start + T − 1, with dropout: (B, T, D)."""
        x = table(ids) * self.scale
        return self.dropout(x + sinusoids(start, ids.shape[1], x.shape[-1], x.device).to(x.dtype))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) → encoder output (B, S, D) and mask (B, 1, 1, S)."""
        mask = (src != PAD)[:, None, None, :]
        x = self.embed(src, self.src_embed)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def wants_weights(self, layer: int, attention: str) -> bool:
        """Whether decoder ``layer`` computes its cross-attention weights for ``attention`` (none, layer, heads)."""
        return attention == "heads" or (attention == "layer" and layer == self.attention_layer)

    def features(self, batch: Batch, attention: str = "layer") -> tuple[torch.Tensor, torch.Tensor | None]:
        memory, mask = self.encode(batch.src)
        y = self.embed(batch.tgt_in, self.tgt_embed)
        found = []
        for i, layer in enumerate(self.decoder_layers):
            y, weights = layer(y, layer.cross_attention.memory(memory), mask, self.wants_weights(i, attention))
            found.append(weights.transpose(1, 2) if weights is not None else None)  # (B, T, H, S)
        return self.decoder_norm(y), self.gather_attention(found, attention, heads_dim=2)

    def gather_attention(self, found: list[torch.Tensor | None], attention: str,
                         heads_dim: int) -> torch.Tensor | None:
        """Per-layer weights (…, H, S), heads at ``heads_dim`` → for ``layer``, the chosen layer's
        average over its heads (…, S); for ``heads``, all of them (…, L, H, S); for ``none``, None."""
        if attention == "none":
            return None
        if attention == "layer":
            return found[self.attention_layer].mean(dim=heads_dim)
        return torch.stack(found, dim=heads_dim)

    def start(self, src: torch.Tensor, lengths: torch.Tensor, attention: str = "layer") -> TransformerState:
        memory, mask = self.encode(src)
        B, H = src.shape[0], self.cfg.heads
        empty = memory.new_zeros(B, H, 0, self.cfg.d_model // H)
        return TransformerState([(empty, empty)] * len(self.decoder_layers),
                                [layer.cross_attention.memory(memory) for layer in self.decoder_layers],
                                mask, 0, attention)

    def step(self, state: TransformerState, prev: torch.Tensor,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, TransformerState]:
        y = self.embed(prev.unsqueeze(1), self.tgt_embed, state.position)  # (N, 1, D)
        cache, found = [], []
        for i, (layer, kv) in enumerate(zip(self.decoder_layers, state.cache)):
            y, kv, weights = layer.step(y, kv, state.memory[i], state.mask, self.wants_weights(i, state.attention))
            cache.append(kv)
            found.append(weights)
        y = self.decoder_norm(y[:, 0])
        logits = self.output(y if rows is None else y.index_select(0, rows)).float()
        attention = self.gather_attention(found, state.attention, heads_dim=1)
        return logits, attention, TransformerState(cache, state.memory, state.mask, state.position + 1,
                                                   state.attention)
