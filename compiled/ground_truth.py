"""The ground-truth circuit of a compiled model, from its weights and its program's graph.

Definition (tested by ``verify.checker``): an edge ``writer -> reader`` is in the
ground truth when the writer writes a residual direction that the reader's
computation uses for this program:

* a direction is *read* when the reader's weights are non-zero on it and, for an
  attention input, it belongs to what the head's RASP node uses: the query SOp
  (q) and key SOp (k) of its selector unless the comparison is TRUE (FALSE
  makes an Aggregate constant), the
  aggregated SOp (v); plus the BOS mechanism: ``one`` in q and ``tokens:BOS``
  in k for a SelectorWidth (it always attends BOS) and for a numerical
  Aggregate (selecting nothing defines its output, 0); ``tokens:BOS`` in v for
  a SelectorWidth.  A categorical Aggregate that selects nothing has no defined
  output, so its BOS fallback is not part of the circuit (known gap: a later
  head reading it as keys sees the BOS position; tests pin this).
  MLP inputs and ``out`` use every direction their weights read.
* a direction is *written* where the writer's output weights are non-zero
  (``one`` and ``tokens:*`` by ``tok``, ``indices:*`` by ``pos``).
* under interchange ablation the corrupted input has the same length, so only
  directions whose value can differ between two inputs of one length count:
  ``tokens:<v>`` and the directions of SOps that depend on token values
  (not ``one``, BOS, pad, indices, nor SOps of positions and length only);
  and a categorical SOp counts for q (k) only when its values score the keys
  (queries) differently.
* under mean ablation a removed edge carries the writer's mean output over the
  reference inputs.  ``mean`` (per position, over the references that have the
  position): a direction whose value at each position is the same in every
  reference equals its mean there, so like interchange it drops out.  Those are
  the directions of functions of the position alone (``one``, BOS, ``indices``,
  SOps of them) and, when every reference has one length, of the length too
  (``length``, ``opp_idx``); with several lengths a length-dependent SOp varies at
  a position and counts.  ``mean-all`` (one mean over every reference and
  position): only directions constant at every position of every reference drop
  out (``one``; BOS and ``indices`` count).  Which directions are constant is read
  off the writers' outputs in the full model on the reference inputs (every input
  up to ``max_seq_len`` unless given; a seeded sample past ``MAX_REFERENCES``), so
  the rule is exact for that reference set.  Under ``mean`` a categorical SOp
  read by q (k) whose values all score alike drops out as under interchange: at
  each position its mean is a mixture (weights summing to 1) of those values'
  directions and scores alike too (not under ``mean-all``, whose mixture takes in
  the BOS position, where the SOp has no value).  Under ``mean-all`` a
  SelectorWidth's MLP does not count its ``tokens:BOS`` read (it only fixes the
  output at the BOS position) unless a head reads that SOp as keys or values.
  This is the rule for every program under every ablation; it is not checked
  here.  Under the mean ablations it can keep an edge the checker finds
  unnecessary: the mean of what the edge carries (a mixture of its values over
  the references) can decode like the values themselves on every input, e.g.
  last_token's query ``length - 1`` still selects the last key because the
  references hold more long inputs than short ones.  The ground truth the suite
  judges by is ``verify.verdict.checked_ground_truth``: this circuit where the
  checker accepts it (meta ``"rule": "static"``), otherwise a minimal circuit
  derived from the model (``"rule": "derived"``, with the edges added and
  dropped).  With the library's references (tests/test_ground_truth_library.py):
  ``mean``: 45/50 static, 5 derived (balanced_prefix, first_a_index,
  last_token, rotate_left, shuffle_dyck); ``mean-all``: 37/50 static, 13
  derived (count_eq_first, first_a_index, first_token, last_token,
  majority_token, max_token, rotate_left, shuffle_dyck, shuffle_dyck2, sort,
  sort_desc, sort_freq, sort_unique).

Dangling edges are then removed with ``edgeprune.core.dangling.prune_dangling``;
under ``mean`` attention heads count as sources there (a head with every input
at its mean still follows the input's length through its softmax).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

from edgeprune.compiled.metadata import ModelMetadata, NodeInfo
from edgeprune.compiled.model import CompiledTransformer
from edgeprune.core import names
from edgeprune.core.circuit import Circuit
from edgeprune.core.dangling import prune_dangling
from edgeprune.core.errors import EdgePruneError
from edgeprune.core.graph import ComputationalGraph
from edgeprune.core.options import check_ablation, is_mean

ONE = "one"
TRIVIAL_PREDICATES = ("TRUE", "FALSE")
_EPS = 0.0
#: mean ablation's default reference set: every input up to max_seq_len, a seeded sample past this many
MAX_REFERENCES = 4000
#: a writer's direction is constant over the references when its values differ by at most this
_CONST_ATOL = 1e-6


@dataclass(frozen=True)
class Direction:
    index: int
    label: str
    owner: str  # SOp label, or 'one' / 'bos' / 'pad' for the constant directions


def _bos_label(meta: ModelMetadata) -> str:
    return f"tokens:{meta.bos}"


def _pad_label(meta: ModelMetadata) -> str:
    return f"tokens:{meta.pad}"


def direction_owners(meta: ModelMetadata) -> list[Direction]:
    """Which SOp (or constant) each residual direction belongs to."""
    owner: dict[str, str] = {ONE: "one", _bos_label(meta): "bos", _pad_label(meta): "pad"}
    for n in meta.nodes:
        for lab in n.output_basis or []:
            owner.setdefault(lab, n.label)
        if n.expr_type == "SelectorWidth":
            owner.setdefault(f"{n.label}_selector_width_attn_output", n.label)
    out = []
    for i, lab in enumerate(meta.residual_labels):
        if lab not in owner:
            prefix = lab.split(":", 1)[0]
            owner[lab] = prefix
        out.append(Direction(i, lab, owner[lab]))
    return out


def token_dependent_sops(meta: ModelMetadata) -> set[str]:
    """SOps whose value at some position can differ between two inputs of the same length."""
    nodes = meta.node_by_label
    memo: dict[str, bool] = {}

    def dep(label: str) -> bool:
        if label in memo:
            return memo[label]
        n = nodes.get(label)
        if n is None:
            result = False
        elif n.expr_type == "tokens":
            result = True
        elif n.expr_type == "indices":
            result = False
        elif n.expr_type == "Select":
            result = n.predicate not in TRIVIAL_PREDICATES and any(dep(o) for o in n.operands)
        else:
            result = any(dep(o) for o in n.operands)
        if n is not None and n.expr_type not in ("Select",) and n.value_set is not None and len(n.value_set) == 1:
            result = False  # a constant SOp is the same for every input
        memo[label] = result
        return result

    return {n.label for n in meta.nodes if dep(n.label)}


def _support(t: torch.Tensor, dim: int) -> set[int]:
    """Residual indices along ``dim`` where the weight is non-zero."""
    other = [d for d in range(t.dim()) if d != dim]
    return (
        set(torch.nonzero(t.abs().amax(dim=other) > _EPS).flatten().tolist())
        if other
        else set(torch.nonzero(t.abs() > _EPS).flatten().tolist())
    )


def writer_supports(model: CompiledTransformer) -> dict[str, set[int]]:
    c = model.config
    out = {names.TOK: _support(model.token_embed, 1), names.POS: _support(model.pos_embed, 1)}
    for layer in range(c.n_layers):
        for h in range(c.n_heads):
            out[names.head(layer, h)] = _support(model.W_O[layer, h], 1)
        out[names.mlp(layer)] = _support(model.W_2[layer], 1)
    return out


def reader_supports(model: CompiledTransformer) -> dict[str, set[int]]:
    c = model.config
    out: dict[str, set[int]] = {}
    for layer in range(c.n_layers):
        for h in range(c.n_heads):
            for role, w in (("q", model.W_Q), ("k", model.W_K), ("v", model.W_V)):
                out[names.head_input(layer, h, role)] = _support(w[layer, h], 0)
        out[names.mlp(layer)] = _support(model.W_1[layer], 0)
    out[names.OUT] = set(model.metadata.output_space)
    return out


REFLEXIVE_PREDICATES = ("EQ", "LEQ", "GEQ")


def bos_fallback_read(sel: NodeInfo, meta: ModelMetadata, causal: bool = False) -> bool:
    """Whether a numerical mean's BOS fallback can change an output the task reads.

    A selector comparing one SOp with itself by EQ, LEQ or GEQ selects at least the
    query's own position, so the fallback only ever acts at the BOS query.  The BOS
    position is read for a numerical output (the objective's softmax runs over every
    position, BOS included, as in the reference) but not for a categorical one; in a
    causal model the BOS query can only attend BOS, so there the fallback is never read.
    """
    keys, queries = sel.keys or sel.operands[0], sel.queries or sel.operands[1]
    never_empty = keys == queries and sel.predicate in REFLEXIVE_PREDICATES
    if never_empty and causal:
        return False  # causal: the BOS query sees only the BOS key, attended with or without the fallback
    return not never_empty or meta.output_encoding == "numerical"


def _head_semantic_owners(node: NodeInfo, meta: ModelMetadata, causal: bool = False) -> dict[str, set[str]]:
    """For a head computing ``node``: the owners (SOps / constants) each of q, k, v uses."""
    nodes = meta.node_by_label
    sel = nodes.get(node.selector or "")
    if sel is None:
        raise ValueError(f"head node {node.label} has no selector in the metadata")
    pred = sel.predicate
    keys, queries = sel.keys or sel.operands[0], sel.queries or sel.operands[1]
    q: set[str] = set()
    k: set[str] = set()
    v: set[str] = set()
    if node.expr_type == "SelectorWidth":
        # with TRUE every key scores alike, BOS included: the pattern is uniform without q and k
        if pred != "TRUE":
            q |= {queries, "one"}  # it always attends BOS through one x tokens:BOS
            k |= {keys, "bos"}
            if pred == "FALSE":
                q, k = {"one"}, {"bos"}
        elif meta.output_encoding == "numerical" and not causal:
            # a numerical output is read at BOS too, where the BOS query's score on BOS (one x tokens:BOS)
            # sets the width the MLP decodes there
            q, k = {"one"}, {"bos"}
        v.add("bos")
    elif node.expr_type == "Aggregate":
        if pred == "FALSE":
            return {"q": set(), "k": set(), "v": set()}  # always the default: the head's output is constant
        if pred != "TRUE":
            q.add(queries)
            k.add(keys)
        v.add(node.sop or node.operands[1])
        # the BOS fallback defines the output when nothing is selected: for a numerical mean (0)
        if pred != "TRUE" and node.encoding == "numerical" and bos_fallback_read(sel, meta, causal):
            q.add("one")
            k.add("bos")
    else:
        raise ValueError(f"head node {node.label} is a {node.expr_type}, expected Aggregate or SelectorWidth")
    return {"q": q, "k": k, "v": v}


def reference_inputs(model: CompiledTransformer, limit: int = MAX_REFERENCES, seed: int = 0) -> list[list[Any]]:
    """Every input of length 1..max_seq_len (distinct tokens when the program requires), a seeded sample past
    ``limit``: the default reference set of mean ablation (the same set as the checker's)."""
    meta = model.metadata
    vocab, n_max = list(meta.vocab), meta.max_seq_len
    distinct = meta.extra.get("input_constraint") == "distinct"
    total = sum(len(vocab) ** n for n in range(1, n_max + 1))
    if total <= 4 * limit:
        out = [
            list(seq)
            for n in range(1, n_max + 1)
            for seq in itertools.product(vocab, repeat=n)
            if not distinct or len(set(seq)) == n
        ]
        if len(out) <= limit:
            return out
        return sorted(random.Random(seed).sample(out, limit), key=lambda s: (len(s), [vocab.index(t) for t in s]))
    rng = random.Random(seed)
    seen: set[tuple] = set()
    while len(seen) < limit:
        n = rng.randint(1, n_max)
        seen.add(tuple(rng.sample(vocab, min(n, len(vocab))) if distinct else (rng.choice(vocab) for _ in range(n))))
    return [list(s) for s in seen]


@torch.no_grad()
def varying_directions(
    model: CompiledTransformer, ablation: str = "mean", reference: Sequence[Sequence[Any]] | None = None
) -> dict[str, set[int]]:
    """Per writer, the residual directions whose output is NOT equal to its mean over the references.

    ``mean``: those whose value at some position differs between two references having that
    position; ``mean-all``: those not constant over every position of every reference.
    """
    if not is_mean(ablation):
        raise ValueError(f"varying_directions is for the mean ablations, got {ablation!r}")
    refs = [list(s) for s in (reference if reference is not None else reference_inputs(model))]
    if not refs:
        raise EdgePruneError("mean ablation's ground truth needs at least one reference input")
    by_len: dict[int, list[list[Any]]] = {}
    for seq in refs:
        by_len.setdefault(len(seq), []).append(seq)
    lo: dict[str, torch.Tensor] = {}  # writer -> (T, D) min (per position) over the references
    hi: dict[str, torch.Tensor] = {}
    for n in sorted(by_len):
        ids = torch.tensor([model.metadata.encode(s) for s in by_len[n]])
        for w, y in model.writer_outputs(ids).items():
            a, b = y.amin(0), y.amax(0)  # (n + 1, D)
            if w not in lo:
                lo[w], hi[w] = a, b
                continue
            k = min(len(a), len(lo[w]))
            lo[w] = torch.cat([torch.minimum(lo[w][:k], a[:k]), lo[w][k:], a[k:]])
            hi[w] = torch.cat([torch.maximum(hi[w][:k], b[:k]), hi[w][k:], b[k:]])
    out = {}
    for w in lo:
        if ablation == "mean-all":
            spread = hi[w].amax(0) - lo[w].amin(0)
        else:
            spread = (hi[w] - lo[w]).amax(0)
        out[w] = set(torch.nonzero(spread > _CONST_ATOL).flatten().tolist())
    return out


def candidate_edges(
    model: CompiledTransformer, ablation: str = "zero", reference: Sequence[Sequence[Any]] | None = None
) -> set[tuple[str, str]]:
    """Ground-truth edges before the dangling rule (``reference``: mean ablation's reference inputs)."""
    if ablation not in ("zero", "interchange", "mean", "mean-all"):
        raise ValueError(f"ablation must be 'zero', 'interchange', 'mean' or 'mean-all', got {ablation!r}")
    meta = model.metadata
    dirs = direction_owners(meta)
    owner_of = {d.index: d.owner for d in dirs}
    varying_owners = token_dependent_sops(meta)
    graph = ComputationalGraph(model.config.n_layers, model.config.n_heads)
    writes = writer_supports(model)
    reads = reader_supports(model)
    nodes = meta.node_by_label

    # restrict attention inputs to what their RASP node uses
    for head, label in meta.blocks.heads.items():
        layer, h = names.parse_node(head)[1:3]
        used = _head_semantic_owners(nodes[label], meta, bool(model.config.causal))
        for role in "qkv":
            r = names.head_input(layer, h, role)
            reads[r] = {i for i in reads[r] if owner_of[i] in used[role]}
    for r in list(reads):  # heads with no program node read nothing
        kind, layer, h, _ = names.parse_node(r)
        if kind == "head_input" and names.head(layer, h) not in meta.blocks.heads:
            reads[r] = set()

    if ablation in ("interchange", "mean"):
        _drop_value_blind_reads(model, reads, owner_of)
    varying = varying_directions(model, ablation, reference) if is_mean(ablation) else {}
    if ablation == "mean-all":
        # a SelectorWidth's MLP reads tokens:BOS only to fix its own output at the BOS position; when no head
        # reads its SOp as keys or values (which see the BOS position), no decoded output takes that value
        by_heads = set()
        for label in meta.blocks.heads.values():
            used = _head_semantic_owners(nodes[label], meta, bool(model.config.causal))
            by_heads |= used["k"] | used["v"]
        for mlp, labels in meta.blocks.mlps.items():
            widths = [lab for lab in labels if lab in nodes and nodes[lab].expr_type == "SelectorWidth"]
            if widths and not by_heads & set(widths):
                reads[mlp] = {i for i in reads[mlp] if owner_of[i] != "bos"}

    def varies(i: int) -> bool:
        o = owner_of[i]
        if o in ("one", "bos", "pad"):
            return False
        return o in varying_owners

    edges = set()
    for w, r in graph.edges:
        shared = writes[w] & reads[r]
        if ablation == "interchange":
            shared = {i for i in shared if varies(i)}
        elif is_mean(ablation):
            shared &= varying[w]
        if shared:
            edges.add((w, r))
    return edges


def _drop_value_blind_reads(model: CompiledTransformer, reads: dict[str, set[int]], owner_of: dict[int, str]) -> None:
    """Under interchange, drop a categorical SOp from q (k) when every value of it scores keys (queries) alike.

    E.g. ``Select(tokens, tokens, lambda k, q: k == "a")`` ignores the query's
    value: swapping it for a corrupted value leaves the pattern unchanged.
    """
    c = model.config
    for layer in range(c.n_layers):
        for h in range(c.n_heads):
            qk = model.W_Q[layer, h] @ model.W_K[layer, h].T  # (D query dirs, D key dirs)
            for role, mat in (("q", qk), ("k", qk.T)):
                r = names.head_input(layer, h, role)
                groups: dict[str, list[int]] = {}
                for i in reads[r]:
                    groups.setdefault(owner_of[i], []).append(i)
                for owner, idx in groups.items():
                    if len(idx) < 2 or owner in ("one", "bos", "pad"):
                        continue
                    rows = mat[idx]
                    if torch.allclose(rows, rows[:1].expand_as(rows), atol=1e-6):
                        reads[r] -= set(idx)


def ground_truth(
    model: CompiledTransformer, ablation: str = "zero", reference: Sequence[Sequence[Any]] | None = None
) -> Circuit:
    """The rule's ground-truth circuit under ``ablation`` (module docstring), for any program; mean ablations
    average over ``reference`` (default: every input, ``reference_inputs``).  Unchecked: the suite's verdicts use
    ``verify.verdict.checked_ground_truth``, which derives a minimal circuit where the checker rejects this one."""
    check_ablation(ablation)
    edges = prune_dangling(candidate_edges(model, ablation, reference), ablation=ablation)
    meta: dict[str, Any] = {"ablation": ablation, "kind": "ground_truth"}
    if is_mean(ablation):
        meta["reference"] = "given" if reference is not None else "every input (reference_inputs)"
    return Circuit(sorted(edges), model=model.metadata.name, meta=meta)


def ground_truth_dict(model: CompiledTransformer) -> dict[str, list[list[str]]]:
    return {a: [list(e) for e in ground_truth(model, a).edges] for a in ("zero", "interchange")}


def ground_truth_graph(model: CompiledTransformer, ablation: str = "zero") -> nx.DiGraph:
    return ground_truth(model, ablation).to_reader_networkx()
