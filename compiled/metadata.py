"""What a compiled model knows about its program: encodings, residual labels, RASP nodes, blocks.

Both the importer of real Tracr models and the project's own compiler fill these
records, so the ground truth is derived by one function for both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeprune.core.errors import InputError, ModelFileError

Token = Any  # a vocab value: str, int or float, as in the RASP program


@dataclass
class NodeInfo:
    """One node of the RASP graph (an SOp or a selector)."""

    label: str
    expr_type: str  # tokens, indices, Map, SequenceMap, LinearSequenceMap, Aggregate, Select, SelectorWidth, ...
    encoding: str | None = None  # categorical / numerical / None for selectors
    operands: list[str] = field(default_factory=list)
    value_set: list[Any] = field(default_factory=list)
    output_basis: list[str] = field(default_factory=list)
    predicate: str | None = None  # Select only: EQ, LT, ..., TRUE, FALSE, or custom
    keys: str | None = None  # Select only
    queries: str | None = None  # Select only
    selector: str | None = None  # Aggregate / SelectorWidth
    sop: str | None = None  # Aggregate: the aggregated SOp
    layer: int | None = None
    head: int | None = None
    block_type: str | None = None  # embedding, mlp, attention_head, selector_width, none

    @classmethod
    def from_dict(cls, d: dict) -> NodeInfo:
        known: dict[str, Any] = {k: d.get(k) for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class BlockMap:
    """Which program node each head and MLP computes."""

    heads: dict[str, str] = field(default_factory=dict)  # "a0.h0" -> node label
    mlps: dict[str, list[str]] = field(default_factory=dict)  # "m0" -> node labels


@dataclass
class ModelMetadata:
    name: str
    vocab: list[Token]
    max_seq_len: int
    bos: Token
    pad: Token
    encoding_map: list[tuple[Token, int]]  # token -> input id (BOS and pad included)
    residual_labels: list[str]
    output_encoding: str  # categorical / numerical
    output_sop: str
    output_space: list[int]  # residual indices read by the output
    output_values: list[Any]  # categorical: decoded value per output-space index; numerical: []
    nodes: list[NodeInfo] = field(default_factory=list)
    blocks: BlockMap = field(default_factory=BlockMap)
    source: str = ""  # tracr-reference / tracr / edgeprune-compiler
    extra: dict = field(default_factory=dict)

    # ----- derived lookups ------------------------------------------------
    def node(self, label: str) -> NodeInfo:
        for n in self.nodes:
            if n.label == label:
                return n
        raise KeyError(label)

    @property
    def node_by_label(self) -> dict[str, NodeInfo]:
        return {n.label: n for n in self.nodes}

    @property
    def bos_id(self) -> int:
        return self.token_to_id[self.bos]

    @property
    def pad_id(self) -> int:
        return self.token_to_id[self.pad]

    @property
    def token_to_id(self) -> dict[Token, int]:
        return {tok: i for tok, i in self.encoding_map}

    def encode(self, tokens: list[Token]) -> list[int]:
        """Input ids with BOS first; raises InputError on an unknown token or a too-long input."""
        if len(tokens) > self.max_seq_len:
            raise InputError(
                f"input has {len(tokens)} tokens but {self.name} accepts at most max_seq_len={self.max_seq_len}; "
                "shorten the input"
            )
        table = self.token_to_id
        ids = [self.bos_id]
        for t in tokens:
            key = self.coerce_token(t)
            if key is None or key in (self.bos, self.pad):
                raise InputError(
                    f"token {t!r} is not in the vocab of {self.name}; allowed tokens: {sorted(map(str, self.vocab))}"
                )
            ids.append(table[key])
        return ids

    def coerce_token(self, t: Token) -> Token | None:
        """Find the vocab value a token stands for, accepting its string form (from a command line)."""
        if t in self.vocab and not isinstance(t, bool):
            for v in self.vocab:  # keep the vocab's own type (1 vs 1.0 vs True)
                if v == t and type(v) is type(t):
                    return v
            return t
        for v in self.vocab:
            if str(v) == str(t):
                return v
        return None

    # ----- JSON ---------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoding_map"] = [list(p) for p in self.encoding_map]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelMetadata:
        try:
            blocks = d.get("blocks") or {}
            return cls(
                name=d["name"],
                vocab=list(d["vocab"]),
                max_seq_len=int(d["max_seq_len"]),
                bos=d["bos"],
                pad=d["pad"],
                encoding_map=[(t, int(i)) for t, i in d["encoding_map"]],
                residual_labels=list(d["residual_labels"]),
                output_encoding=d["output_encoding"],
                output_sop=d["output_sop"],
                output_space=[int(i) for i in d["output_space"]],
                output_values=list(d.get("output_values", [])),
                nodes=[NodeInfo.from_dict(n) for n in d.get("nodes", [])],
                blocks=BlockMap(heads=dict(blocks.get("heads", {})), mlps=dict(blocks.get("mlps", {}))),
                source=d.get("source", ""),
                extra=d.get("extra", {}),
            )
        except KeyError as exc:
            raise ModelFileError(f"model metadata lacks the field {exc}; re-export the model") from exc
