"""Block constructions (Tracr's ``craft/chamber``): MLPs as lookup tables or discretisers, attention with BOS.

Every function returns craft blocks in named spaces; the numbers are Tracr's:
softmax coldness 100 on top of Haiku's 1/sqrt(key_size), BOS logit
0.5*coldness (1*coldness for SelectorWidth), discretisation thresholds at the
midpoints of sorted input values with slope ``large_number``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from edgeprune.compiled.compiler.craft import (
    MLP,
    AttentionHead,
    AttnMLPPair,
    Bilinear,
    Direction,
    Linear,
    add,
    join,
    scale,
    space,
    vec,
)
from edgeprune.core.errors import CompileError


def map_categorical_mlp(
    inputs: list[Direction], outputs: list[Direction], f: Callable[[Any], Any], out_name: str, node: str
) -> MLP:
    """Lookup table: hidden = the output space, input value x lights the neuron of f(x)."""
    out_set = set(outputs)

    def first(d: Direction) -> dict:
        target = Direction(out_name, f(d.value))
        return vec(target) if target in out_set else {}

    fst = Linear.from_action(inputs, outputs, first)
    snd = Linear.from_action(outputs, outputs, lambda d: vec(d))
    return MLP(fst, snd, [node], {node: list(outputs)})


def map_categorical_to_numerical_mlp(
    inputs: list[Direction], output: Direction, f: Callable[[Any], float], node: str
) -> MLP:
    """Hidden = the single output direction, weight f(x) from input x (a ReLU: negative f is lost, as in Tracr)."""
    fst = Linear.from_action(inputs, [output], lambda d: vec(output, f(d.value)))
    snd = Linear.from_action([output], [output], lambda d: vec(d))
    return MLP(fst, snd, [node], {node: [output]})


def sequence_map_categorical_mlp(
    in1: list[Direction],
    in2: list[Direction],
    outputs: list[Direction],
    f: Callable[[Any, Any], Any],
    out_name: str,
    one: Direction,
    hidden_name: str,
    node: str,
) -> MLP:
    """One hidden neuron per value pair: ReLU(x_i + y_j - 1), then a lookup table to f(x_i, y_j)."""
    if set(in1) & set(in2):
        raise CompileError(f"SequenceMap {node!r}: the two operand spaces overlap; use a Map for a single operand")

    def hid(x: Direction, y: Direction) -> Direction:
        return Direction(hidden_name, (x.name, x.value, y.name, y.value))

    hidden = space(hid(x, y) for x in in1 for y in in2)
    in1_set, in2_set = set(in1), set(in2)

    def first(d: Direction) -> dict:
        if d == one:
            return {h: -1.0 for h in hidden}
        if d in in1_set:
            return {hid(d, y): 1.0 for y in in2}
        if d in in2_set:
            return {hid(x, d): 1.0 for x in in1}
        return {}

    out_set = set(outputs)

    def second(h: Direction) -> dict:
        xn, xv, yn, yv = h.value
        target = Direction(out_name, f(xv, yv))
        return vec(target) if target in out_set else {}

    fst = Linear.from_action(join(in1, in2, [one]), hidden, first)
    snd = Linear.from_action(hidden, outputs, second)
    return MLP(fst, snd, [node], {node: hidden})


def _discretising_layer(
    input_values: Iterable[float],
    f: Callable[[float], Any],
    hidden_name: str,
    one: Direction,
    inp: Direction,
    large: float,
    call: Callable[..., Any],
):
    """Hidden directions and first-layer action that place x between midpoints of the sorted input values."""
    outs, xs = [], []
    for x in sorted(input_values):
        r = call(f, x)
        if r is not None:
            outs.append(r)
            xs.append(x)
    thresholds = [(xs[i] + xs[i + 1]) / 2 for i in range(len(xs) - 1)]
    start = Direction(f"{hidden_name}start")
    dirs = [start]
    for k in range(1, len(xs)):
        dirs += [Direction(hidden_name, (k, 0)), Direction(hidden_name, (k, 1))]
    hidden = space(dirs)

    def action(d: Direction) -> dict:
        out: dict = {}
        if d == one:
            out[start] = 1.0
        for k in range(1, len(xs)):
            t = thresholds[k - 1]
            if d == one:
                out[Direction(hidden_name, (k, 0))] = 1 - large * t
                out[Direction(hidden_name, (k, 1))] = -large * t
            else:
                out[Direction(hidden_name, (k, 0))] = large
                out[Direction(hidden_name, (k, 1))] = large
        return out

    return hidden, action, outs, start


def map_numerical_mlp(
    f: Callable[[float], float],
    inp: Direction,
    out: Direction,
    input_values: Iterable[float],
    one: Direction,
    large: float,
    hidden_name: str,
    node: str,
    call: Callable[..., Any],
) -> MLP:
    """Numerical -> numerical by discretising the input: output = f(v0) + sum_k step_k * (f(v_k) - f(v_k-1))."""
    hidden, action, outs, start = _discretising_layer(input_values, f, hidden_name, one, inp, large, call)
    fst = Linear.from_action(join([inp], [one]), hidden, action)

    def second(h: Direction) -> dict:
        if h == start:
            return vec(out, outs[0])
        k, i = h.value
        sign = 1 if i == 0 else -1
        return vec(out, sign * (outs[k] - outs[k - 1]))

    snd = Linear.from_action(hidden, [out], second)
    return MLP(fst, snd, [node], {node: hidden})


def map_numerical_to_categorical_mlp(
    f: Callable[[float], Any],
    inp: Direction,
    outputs: list[Direction],
    input_values: Iterable[float],
    one: Direction,
    large: float,
    hidden_name: str,
    node: str,
    call: Callable[..., Any],
) -> MLP:
    """Numerical -> categorical: the same discretiser, the steps switch one-hot output directions."""
    by_value = {d.value: d for d in outputs}
    hidden, action, outs, start = _discretising_layer(input_values, f, hidden_name, one, inp, large, call)
    missing = [o for o in outs if o not in by_value]
    if missing:
        raise CompileError(f"{node!r}: outputs {missing} are not in its value set")
    fst = Linear.from_action(join([inp], [one]), hidden, action)

    def second(h: Direction) -> dict:
        if h == start:
            return vec(by_value[outs[0]])
        k, i = h.value
        sign = 1 if i == 0 else -1
        return scale(add(vec(by_value[outs[k]]), vec(by_value[outs[k - 1]], -1.0)), sign)

    snd = Linear.from_action(hidden, outputs, second)
    return MLP(fst, snd, [node], {node: hidden})


def linear_sequence_map_mlp(
    in1: Direction, in2: Direction, out: Direction, fac1: float, fac2: float, hidden_name: str, node: str
) -> MLP:
    """a*x + b*y through ReLU(x) - ReLU(-x) pairs (four hidden neurons)."""
    hx_p, hx_n = Direction(f"{hidden_name}x", 1), Direction(f"{hidden_name}x", -1)
    hy_p, hy_n = Direction(f"{hidden_name}y", 1), Direction(f"{hidden_name}y", -1)
    hidden = space([hx_p, hx_n, hy_p, hy_n])

    def first(d: Direction) -> dict:
        out: dict = {}
        if d == in1:
            out = add(out, {hx_p: 1.0, hx_n: -1.0})
        if d == in2:
            out = add(out, {hy_p: 1.0, hy_n: -1.0})
        return out

    def second(h: Direction) -> dict:
        fac = fac1 if h.name == f"{hidden_name}x" else fac2
        return vec(out, fac * h.value)

    fst = Linear.from_action(space([in1, in2]), hidden, first)
    snd = Linear.from_action(hidden, [out], second)
    return MLP(fst, snd, [node], {node: hidden})


def categorical_attn(
    query: list[Direction],
    key: list[Direction],
    value: list[Direction],
    output: list[Direction],
    bos: Direction,
    one: Direction,
    attn_fn: Callable[[Direction, Direction], bool],
    node: str,
    *,
    always_attend_to_bos: bool = False,
    use_bos_for_default_output: bool = True,
    softmax_coldness: float = 100.0,
    causal: bool = False,
) -> AttentionHead:
    """Attention that attends to BOS only when nothing else is selected (or always, for SelectorWidth)."""
    q_space = join(query, [bos], [one])
    k_space = join(key, [bos])
    v_space = join(value, [bos])
    v_basis = v_space if always_attend_to_bos else [d for d in v_space if d != bos]
    if len(v_basis) != len(output):
        raise CompileError(f"attention {node!r}: {len(v_basis)} value directions but {len(output)} output directions")
    value_to_output = dict(zip(v_basis, output))
    special = {one, bos}

    def qk(q: Direction, k: Direction) -> float:
        if k == bos and q == one:
            return (1.0 if always_attend_to_bos else 0.5) * softmax_coldness
        if q in special or k in special:
            return 0.0
        return softmax_coldness * float(attn_fn(q, k))

    w_qk = Bilinear.from_action(q_space, k_space, qk)

    def ov(d: Direction) -> dict:
        if use_bos_for_default_output and d == bos:
            return {}  # the default output is the zero vector
        return vec(value_to_output[d])

    w_ov = Linear.from_action(v_space, output, ov)
    return AttentionHead(w_qk, w_ov, node, causal)


def selector_width(
    query: list[Direction],
    key: list[Direction],
    outputs: list[Direction],
    bos: Direction,
    one: Direction,
    attn_fn: Callable[[Direction, Direction], bool],
    out_values: Iterable[int],
    categorical_output: bool,
    large: float,
    label: str,
    call: Callable[..., Any],
    softmax_coldness: float = 100.0,
    causal: bool = False,
) -> AttnMLPPair:
    """Head: attend to BOS and the selected keys, read tokens:BOS -> 1/(w+1); MLP: invert, clean the BOS position."""
    attn_out = Direction(f"{label}_selector_width_attn_output")
    attn = categorical_attn(
        query,
        key,
        [bos],
        [attn_out],
        bos,
        one,
        attn_fn,
        label,
        always_attend_to_bos=True,
        use_bos_for_default_output=False,
        softmax_coldness=softmax_coldness,
        causal=causal,
    )
    fun = lambda x: round((1 / x) - 1)  # noqa: E731
    in_values = {1 / (w + 1) for w in out_values}
    hidden_name = f"_hidden_{label}_"
    if categorical_output:
        mlp = map_numerical_to_categorical_mlp(fun, attn_out, outputs, in_values, one, large, hidden_name, label, call)
    else:
        mlp = map_numerical_mlp(fun, attn_out, outputs[0], in_values, one, large, hidden_name, label, call)
    # At BOS the head writes 1 to attn_out (and the MLP reads it as width 0): subtract both there.
    clean_out = join([attn_out], outputs)
    to_subtract = vec(attn_out)
    if categorical_output:
        zero = [d for d in outputs if d.value == 0][0]
        to_subtract = add(to_subtract, vec(zero))
    clean = Direction("_hidden_clean_bos_")
    clean_mlp = MLP(
        Linear.from_action([bos], [clean], lambda d: vec(clean)),
        Linear.from_action([clean], clean_out, lambda d: scale(to_subtract, -1.0)),
        [label],
        {label: [clean]},
    )
    return AttnMLPPair(attn, MLP.combine_in_parallel([mlp, clean_mlp]))
