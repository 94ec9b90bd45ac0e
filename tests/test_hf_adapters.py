"""The ``transformers`` adapters against the real models (tiny, random, saved and reloaded locally).

Checks: every mask at 1 gives the original model's logits; every mask at 0 under
interchange ablation gives the logits on the corrupted input; a random binary
edge and node mask agrees with the slow edge-by-edge forward; unsupported
architectures are refused by name; edge counts of the paper's graphs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from edgeprune.core.errors import EdgePruneError, ModelFileError  # noqa: E402
from edgeprune.core.graph import ComputationalGraph  # noqa: E402
from edgeprune.pruning.adapters.gpt2 import GPT2Adapter  # noqa: E402
from edgeprune.pruning.adapters.hf_loading import adapter_for, load_hf_model  # noqa: E402
from edgeprune.pruning.adapters.llama import LlamaAdapter  # noqa: E402
from edgeprune.pruning.disentangled import DisentangledForward, ablated_states  # noqa: E402
from edgeprune.verify.slow_adapter_forward import masked_forward_adapter  # noqa: E402

torch.set_num_threads(1)

WORDS = [f"w{i}" for i in range(28)]
VOCAB = 32  # 28 words + [UNK] [PAD] [BOS] + 1 spare
TOL = 1e-4


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "[BOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]")


def _save(model, path: Path) -> Path:
    model.save_pretrained(path)
    _tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=64,
        bos_token_id=2,
        eos_token_id=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.3,
    )
    model = GPT2LMHeadModel(cfg)
    # large weights (initializer_range 0.3) give peaked attention, so a wrong mask, scale or
    # position shows up far above the tolerance instead of hiding in near-uniform attention
    with torch.no_grad():  # random biases and norms, so the b_O / H split and ln per reader are exercised
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return _save(model, tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module", params=[(4, 2), (4, 4)], ids=["gqa4x2", "mha4"])
def llama_dir(request, tmp_path_factory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    heads, kv = request.param
    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=64,
        attention_bias=(kv == heads),
        tie_word_embeddings=False,
        initializer_range=0.3,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return _save(model, tmp_path_factory.mktemp(f"llama{heads}x{kv}"))


def _inputs(tok, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (7,), generator=g)) for _ in range(3)]
    clean = tok(rows, return_tensors="pt")["input_ids"]
    rows_c = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (7,), generator=g)) for _ in range(3)]
    corrupted = tok(rows_c, return_tensors="pt")["input_ids"]
    return clean, corrupted


def _loaded(path: Path):
    model, tok = load_hf_model(path, dtype="float32")
    adapter = adapter_for(model)
    return model, tok, adapter


@pytest.fixture(params=["gpt2", "llama"])
def loaded(request, gpt2_dir, llama_dir):
    return _loaded(gpt2_dir if request.param == "gpt2" else llama_dir)


def test_dispatch_and_graph(gpt2_dir, llama_dir):
    _, tok, gpt2 = _loaded(gpt2_dir)
    assert isinstance(gpt2, GPT2Adapter) and gpt2.graph.embeddings == ("tok", "pos")
    assert tok.convert_tokens_to_ids("w0") == 3
    model, _, llama = _loaded(llama_dir)
    assert isinstance(llama, LlamaAdapter) and llama.graph.embeddings == ("tok",)
    assert llama.graph.kv_heads == model.config.num_key_value_heads


def test_all_masks_one_equal_model(loaded):
    model, tok, adapter = loaded
    ids, _ = _inputs(tok, 0)
    with torch.no_grad():
        want = model(ids).logits
        fwd = DisentangledForward(adapter)
        ones = adapter.graph.allowed_mask()
        got = fwd.output(ids, ones)
        plain = adapter.full_output(ids)
    assert (got - want).abs().max() < TOL
    assert (plain - want).abs().max() < TOL


def test_all_masks_zero_interchange_equal_corrupted_run(loaded):
    model, tok, adapter = loaded
    ids, corrupted = _inputs(tok, 1)
    with torch.no_grad():
        want = model(corrupted).logits
        ablated = ablated_states(adapter, "interchange", ids, corrupted)
        got = DisentangledForward(adapter).output(ids, torch.zeros_like(adapter.graph.allowed_mask()), None, ablated)
    assert (got - want).abs().max() < TOL


@pytest.mark.parametrize("ablation", ["zero", "interchange"])
def test_random_mask_matches_slow_forward(loaded, ablation):
    _, tok, adapter = loaded
    g = adapter.graph
    ids, corrupted = _inputs(tok, 2)
    gen = torch.Generator().manual_seed(3)
    allowed = g.allowed_mask()
    edge_mask = allowed * (torch.rand(allowed.shape, generator=gen) < 0.6)
    node_mask = (torch.rand(len(g.writers), generator=gen) < 0.8).float()
    # the effective edge mask is z_wr * z_w: fold the node mask into the edge set for the slow loop
    eff = edge_mask * node_mask[:, None]
    kept = [(g.writers[w], g.readers[r]) for w, r in eff.nonzero().tolist()]
    assert 0 < len(kept) < g.n_edges
    with torch.no_grad():
        ablated = ablated_states(adapter, ablation, ids, corrupted if ablation == "interchange" else None)
        got = DisentangledForward(adapter).output(ids, edge_mask, node_mask, ablated)
    want = masked_forward_adapter(adapter, ids, kept, ablation, corrupted)
    assert (got - want).abs().max() < TOL


def test_head_major_attention_matches_the_batch_major_path(loaded):
    """The ``transformers`` adapters' own head-major attention (one norm, one batched projection for every
    reader; Llama with and without grouped-query attention) gives the values and mask gradients of the
    default path through ``attention``."""
    from edgeprune.pruning.adapter import ModelAdapter

    _, tok, adapter = loaded
    ids, corrupted = _inputs(tok, 4)
    ablated = ablated_states(adapter, "interchange", ids, corrupted)
    allowed = adapter.graph.allowed_mask()
    results = []
    for own in (True, False):
        if not own:  # the base class's version, through the adapter's batch-major attention
            adapter.attention_head_major = ModelAdapter.attention_head_major.__get__(adapter)
        edge = (allowed * torch.rand(allowed.shape, generator=torch.Generator().manual_seed(5))).requires_grad_(True)
        node = torch.rand(len(adapter.graph.writers), generator=torch.Generator().manual_seed(6)).requires_grad_(True)
        out = DisentangledForward(adapter).output(ids, edge, node, ablated)
        out.logsumexp(-1).sum().backward()
        results.append((out.detach(), edge.grad, node.grad))
    (o1, e1, n1), (o2, e2, n2) = results
    assert (o1 - o2).abs().max() < TOL
    assert torch.allclose(e1, e2, atol=1e-4) and torch.allclose(n1, n2, atol=1e-4) and e1.abs().sum() > 0


def test_fused_blocks_match_the_modules(loaded):
    """The adapters' own corrupted-run attention (the norm and the q/k/v projections once on the residual, heads
    through their output-projection slices) gives the default path's per-head outputs (GPT-2; Llama with
    grouped-query attention), and GPT-2's MLP with torch's tanh GELU the module's ``gelu_new`` MLP."""
    from edgeprune.pruning.adapter import ModelAdapter

    model, _, adapter = loaded
    g = adapter.graph
    gpt2 = isinstance(adapter, GPT2Adapter)
    x = torch.randn(3, 7, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    km = torch.ones(3, 7, dtype=torch.bool)
    km[0, 5:] = False
    for layer in range(g.n_layers):
        with torch.no_grad():
            own = adapter.attention_of_residual(layer, x, km)
            default = ModelAdapter.attention_of_residual(adapter, layer, x, km)
        assert own.shape == (g.n_heads, 3, 7, model.config.hidden_size)
        torch.testing.assert_close(own, default, atol=1e-5, rtol=1e-5)
        if gpt2:
            assert adapter._fused_gelu
            block = model.transformer.h[layer]
            with torch.no_grad():
                torch.testing.assert_close(adapter.mlp(layer, x), block.mlp(block.ln_2(x)), atol=1e-5, rtol=1e-5)


def test_key_padding_matches_model(loaded):
    model, tok, adapter = loaded
    rows = ["w1 w2 w3 w4 w5", "w6 w7"]
    enc = tok(rows, return_tensors="pt", padding=True)
    ids, km = enc["input_ids"], enc["attention_mask"]
    assert tok.padding_side == "right" and not bool(km.all())
    with torch.no_grad():
        want = model(ids, attention_mask=km).logits
        got = DisentangledForward(adapter).output(ids, adapter.graph.allowed_mask(), key_mask=km.bool())
    real = km.bool()
    assert (got[real] - want[real]).abs().max() < TOL
    assert torch.isfinite(got).all()
    assert torch.equal(adapter.loss_mask(ids, km), real)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_gradients_reach_masks_with_checkpointing(which, gpt2_dir, llama_dir):
    """Gradient checkpointing (reader inputs and attention recomputed in the backward pass) changes memory,
    not values: same edge and node gradients with and without, and the adapter's flag is left as it was."""
    model, tok = load_hf_model(gpt2_dir if which == "gpt2" else llama_dir)
    ids, corrupted = _inputs(tok, 4)
    grads = []
    for ckpt in (False, True):
        adapter = adapter_for(model, gradient_checkpointing=ckpt)
        mask = (adapter.graph.allowed_mask() * 0.7).requires_grad_(True)
        node = torch.full((len(adapter.graph.writers),), 0.9, requires_grad=True)
        ablated = ablated_states(adapter, "interchange", ids, corrupted)
        out = DisentangledForward(adapter).output(ids, mask, node, ablated)
        out.logsumexp(-1).sum().backward()
        grads.append((mask.grad, node.grad))
        assert adapter.gradient_checkpointing == ckpt
        assert not any(p.requires_grad for p in model.parameters())
    assert grads[0][0].abs().sum() > 0
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5) and torch.allclose(grads[0][1], grads[1][1], atol=1e-5)


def test_bfloat16_model_runs_with_float32_stream(llama_dir):
    model32, tok = load_hf_model(llama_dir, dtype="float32")
    model16, _ = load_hf_model(llama_dir, dtype="bfloat16")
    assert next(model16.parameters()).dtype == torch.bfloat16
    ids, _ = _inputs(tok, 5)
    adapter = adapter_for(model16)
    with torch.no_grad():
        got = DisentangledForward(adapter).output(ids, adapter.graph.allowed_mask())
        want = model32(ids).logits
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.05 * want.abs().max()  # bf16 rounding only


def test_unsupported_architecture_is_named(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    path = _save(GPTNeoXForCausalLM(cfg), tmp_path / "neox")
    model, _ = load_hf_model(path)
    with pytest.raises(EdgePruneError, match="GPTNeoXForCausalLM.*GPT2LMHeadModel.*LlamaForCausalLM"):
        adapter_for(model)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_hf_model(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError, match="has no config.json"):
        load_hf_model(empty)


def test_edge_counts_of_the_papers_graphs():
    gpt2_small = ComputationalGraph(12, 12)  # tok and pos writers
    assert gpt2_small.n_edges == 32_936
    assert len(gpt2_small.writers) == 158 and len(gpt2_small.readers) == 445
    # CodeLlama-13B without an embedding node: count without materialising 3.9M edge tuples
    codellama = ComputationalGraph(40, 40, embeddings=())
    assert len(codellama.writers) == 1640 and len(codellama.readers) == 4841
    assert sum(codellama.n_inputs(r) for r in codellama.readers) == 3_872_820
    assert int(codellama.allowed_mask().sum()) == 3_872_820
    with_emb = ComputationalGraph(40, 40, embeddings=("tok",))
    assert sum(with_emb.n_inputs(r) for r in with_emb.readers) == 3_877_661


def test_gqa_edge_count_matches_formula():
    """EP's Llama formula: [R with an embedding node] + sum_l H(1 + (L-l-1)(H+2KV+1) + 1) + (L-l-1)(H+2KV+1) + 1."""
    L, H, KV = 3, 4, 2
    g = ComputationalGraph(L, H, embeddings=("tok",), n_kv_heads=KV)
    R = L * (H + 2 * KV + 1) + 1
    per = H + 2 * KV + 1
    want = R + sum(H * (1 + (L - l - 1) * per + 1) + (L - l - 1) * per + 1 for l in range(L))
    assert g.n_edges == want
    assert len(g.readers) == R


def test_fingerprint_ignores_path_spelling_and_dtype(gpt2_dir, monkeypatch):
    """A circuit or checkpoint is tied to the weights, not to how the directory was named or the load dtype."""
    a = adapter_for(load_hf_model(gpt2_dir).model).model_id()
    monkeypatch.chdir(gpt2_dir.parent)
    b = adapter_for(load_hf_model(f"./{gpt2_dir.name}").model).model_id()
    c = adapter_for(load_hf_model(gpt2_dir, dtype="bfloat16").model).model_id()
    assert a.rsplit(":", 1)[1] == b.rsplit(":", 1)[1] == c.rsplit(":", 1)[1]
    model, _ = load_hf_model(gpt2_dir)
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    assert adapter_for(model).model_id() != a


# ----- bad model directories and devices: one message naming the fix (issue 15) -------------------


def _strip(src: Path, dst: Path, drop: tuple[str, ...]) -> Path:
    import shutil

    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


def test_pickle_only_weights_refused_with_conversion(gpt2_dir, tmp_path):
    """pytorch_model.bin is a pickle: refused before transformers would unpickle it, with the conversion."""
    d = _strip(gpt2_dir, tmp_path / "bin", ("model.safetensors",))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelFileError) as err:
        load_hf_model(d)
    msg = str(err.value)
    assert "pytorch_model.bin" in msg and "safetensors weights only" in msg and "save_pretrained" in msg


def test_directory_without_weights_or_config(gpt2_dir, tmp_path):
    with pytest.raises(ModelFileError, match=r"no weights \(model.safetensors\)"):
        load_hf_model(_strip(gpt2_dir, tmp_path / "now", ("model.safetensors",)))
    with pytest.raises(ModelFileError, match="no config.json"):
        load_hf_model(_strip(gpt2_dir, tmp_path / "noc", ("config.json",)))


def test_missing_tokenizer_files_named(gpt2_dir, tmp_path):
    tok_files = tuple(p.name for p in gpt2_dir.iterdir() if p.name.startswith(("tokenizer", "special_tokens")))
    d = _strip(gpt2_dir, tmp_path / "notok", tok_files)
    with pytest.raises(ModelFileError, match=r"no tokenizer files \(one of tokenizer.json.*tokenizer.save_pretrained"):
        load_hf_model(d)
    assert load_hf_model(d, tokenizer=False).tokenizer is None  # the weights alone still load


def test_cuda_without_cuda_is_a_clear_error(gpt2_dir, monkeypatch, capsys):
    from edgeprune.cli import main
    from edgeprune.pruning.adapters.hf_loading import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(EdgePruneError, match="PyTorch sees no CUDA device.*--device cpu"):
            load_hf_model(gpt2_dir, device=device)
    rc = main(["prune", "--model", str(gpt2_dir), "--task", "ioi", "--device", "cuda", "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--device cuda asked for CUDA" in err and "Traceback" not in err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(EdgePruneError, match=r"1 CUDA device\(s\), cuda:0..cuda:0"):
        resolve_device("cuda:3")
    with pytest.raises(EdgePruneError, match="not a device"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_distributed_cuda_without_cuda(monkeypatch):
    from edgeprune.pruning.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for var, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29999")):
        monkeypatch.setenv(var, value)
    with pytest.raises(EdgePruneError, match="--device cuda:0 asked for CUDA"):
        init_distributed(device="cuda:0")


def test_example_longer_than_positions_named(gpt2_dir, tmp_path):
    """The model has 32 positions: a 40-token example is refused by file and line, not an IndexError."""
    import json

    from edgeprune.pruning.language_models import load_model, load_task

    loaded = load_model(gpt2_dir)
    assert loaded.tokenizer.model_max_length == 32
    short = {"clean": "w1 w2 w3<predict> w4</predict>", "corrupted": "w5 w2 w3<predict> w4</predict>"}
    words = " ".join(WORDS[i % 28] for i in range(39))
    long = {"clean": f"{words}<predict> w1</predict>", "corrupted": f"{words}<predict> w2</predict>"}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(short) + "\n" + json.dumps(long) + "\n")
    ds = load_task(path, loaded.tokenizer)
    with pytest.raises(EdgePruneError, match=r"t.jsonl:2\).*40 tokens exceed the model's context of 32 positions"):
        ds.batch("train")


# ----- fuzz: a damaged model directory loads or is refused with a message ---------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.test_fuzz_inputs import JSON_VALUES, _mutate  # noqa: E402

CONFIG_FIELDS = ["n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "model_type", "architectures", "n_inner"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), which=st.sampled_from(["config.json", "config field", "model.safetensors", "tokenizer.json"]))
def test_fuzz_hf_model_dir(tmp_path_factory, gpt2_dir, data, which):
    import json
    import shutil

    from edgeprune.pruning.language_models import load_model

    d = tmp_path_factory.mktemp("hf") / "m"
    shutil.copytree(gpt2_dir, d)
    if which == "config field":
        doc = json.loads((d / "config.json").read_text())
        doc[data.draw(st.sampled_from(CONFIG_FIELDS))] = data.draw(JSON_VALUES)
        (d / "config.json").write_text(json.dumps(doc))
    else:
        path = d / which
        path.write_bytes(_mutate(path.read_bytes(), data.draw))
    try:
        loaded = load_model(d)
        loaded.adapter.graph  # noqa: B018  # what prune builds first
    except EdgePruneError as err:
        assert str(err).strip()
