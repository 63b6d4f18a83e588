"""Request and response bodies of the REST API (they also make the OpenAPI docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from regard.serving.settings import setting_help


class TranslateRequest(BaseModel):
    """Either ``text`` or ``texts``; the other fields are optional."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"text": "the black cat ate the mouse", "beam": 5, "nbest": 3}]})

    text: str | None = Field(None, description="one English sentence")
    texts: list[str] | None = Field(None, description="several English sentences, translated together")
    beam: int | None = Field(None, description="beam size, 1 = greedy (default: the model's, within the limit)")
    nbest: int = Field(1, description="how many hypotheses per sentence, 1 ≤ nbest ≤ beam")
    model: str | None = Field(None, description="name of a loaded model (default: the first one)")
    heads: bool = Field(False, description="also return every decoder layer's and head's attention "
                                           "(head_attention, head_word_attention; for a Transformer)")


class Hypothesis(BaseModel):
    """One translation with its alignment; the attention fields are null for ``attention: none``."""

    text: str
    score: float = Field(description="length-normalised log-probability; higher is better")
    tokens: list[str] = Field(description="target subword pieces")
    target_words: list[str]
    attention: list[list[float]] | None = Field(description="target pieces × source pieces")
    word_attention: list[list[float]] | None = Field(description="target words × source words")
    head_attention: list[list[list[list[float]]]] | None = Field(
        None, description="only with 'heads': layers × heads × target pieces × source pieces")
    head_word_attention: list[list[list[list[float]]]] | None = Field(
        None, description="only with 'heads': layers × heads × target words × source words")


class Result(BaseModel):
    """The hypotheses for one input sentence, best first."""

    source: str
    source_tokens: list[str]
    source_words: list[str]
    hypotheses: list[Hypothesis]


class TranslateResponse(BaseModel):
    model: str
    has_attention: bool
    beam: int
    nbest: int
    results: list[Result] = Field(description="one per input text, in order")


class ModelInfo(BaseModel):
    name: str
    default: bool
    attention: str = Field(description="attention scorer; 'none' is the model without attention; "
                                       "'multi-head' for a Transformer")
    has_attention: bool
    rnn: str
    arch: str = Field("rnn", description="architecture: rnn or transformer")
    layers: int = Field(1, description="decoder layers whose attention 'heads' returns")
    heads: int = Field(1, description="attention heads per layer")
    attention_layer: int = Field(1, description="the layer (from 1) whose heads, averaged, are 'attention'")
    beam: int = Field(description="beam used when a request gives none")
    parameters: int


class Limits(BaseModel):
    """What one request may ask for (the settings of the same names)."""

    max_chars: int = Field(description=setting_help("max_chars"))
    max_texts: int = Field(description=setting_help("max_texts"))
    max_beam: int = Field(description=setting_help("max_beam"))
    max_work: int = Field(description=setting_help("max_work"))
    max_response_mb: float = Field(description=setting_help("max_response_mb"))
    deadline_s: float = Field(description=setting_help("deadline_s"))


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]
    limits: Limits


class Health(BaseModel):
    status: str
    models: list[str]
    queued: int = Field(description="requests waiting for the model (or not all translated yet)")
    requests: int = Field(description="requests translated so far")
    batches: int = Field(description="model calls so far (fewer than requests when batching)")


class ErrorBody(BaseModel):
    error: str
