"""Loading Hugging Face causal LMs and choosing the adapter for their architecture.

Why a separate module: loading is the only place that talks to ``from_pretrained``
(hub id or local directory), and the dispatch keeps the list of supported
architectures in one spot so the error message can name them.  The shared
block arithmetic for HF adapters (masking, dtypes, checkpointing, fingerprint)
lives in ``HFAdapterBase`` so the GPT-2 and Llama adapters only describe what
differs between the families.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch

from edgeprune.core.errors import EdgePruneError, ModelFileError
from edgeprune.pruning.adapter import ModelAdapter

#: architecture class name -> (module, adapter class name); imported lazily to avoid cycles
SUPPORTED_ARCHITECTURES: dict[str, tuple[str, str]] = {
    "GPT2LMHeadModel": ("edgeprune.pruning.adapters.gpt2", "GPT2Adapter"),
    "LlamaForCausalLM": ("edgeprune.pruning.adapters.llama", "LlamaAdapter"),
}

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
    "fp64": torch.float64,
}


#: config keys that say how a model was loaded, not which model it is
_NOT_FINGERPRINTED = frozenset(
    {
        "_name_or_path",
        "dtype",
        "torch_dtype",
        "_attn_implementation_autoset",
        "attn_implementation",
        "_attn_implementation",
        "transformers_version",
    }
)


class HFModel(NamedTuple):
    """A loaded model and its tokenizer (None when the directory has none and it was not required)."""

    model: Any
    tokenizer: Any


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise EdgePruneError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}") from None


def dtype_keyword() -> str:
    """The ``from_pretrained`` keyword for the weights' dtype in the installed ``transformers``.

    Why: 4.56 renamed ``torch_dtype`` to ``dtype``; older versions pass an unknown ``dtype``
    on to the model's ``__init__``, which fails, and 5.x warns on ``torch_dtype``.
    """
    import transformers

    version = re.match(r"(\d+)\.(\d+)", transformers.__version__)
    major_minor = (int(version.group(1)), int(version.group(2))) if version else (99, 0)
    return "dtype" if major_minor >= (4, 56) else "torch_dtype"


#: files a tokenizer is loaded from (fast tokenizer, sentencepiece, GPT-2 BPE, WordPiece)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
#: weight files that are pickles: loading them can run code, so they are refused
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def resolve_device(device: str | torch.device) -> torch.device:
    """The device a model goes to, refused with the fix when this machine cannot provide it.

    Why here: ``model.to("cuda")`` without CUDA fails deep inside torch with a message about
    the build; the user asked for a device, so the message names ``--device`` and what exists.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EdgePruneError(f"--device {device!r} is not a device ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise EdgePruneError(
                f"--device {device} asked for CUDA, but PyTorch sees no CUDA device on this machine (torch "
                f"{torch.__version__}, {build}); use --device cpu, or run on a machine with a GPU and a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise EdgePruneError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; pick one of them"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise EdgePruneError(f"--device {device}: the MPS backend is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise EdgePruneError(f"--device {device}: unsupported device type {dev.type!r}; use cpu or cuda")
    return dev


def check_local_model_dir(path: Path, tokenizer: bool) -> None:
    """A local directory holds config.json, safetensors weights and (when wanted) tokenizer files.

    Why before ``from_pretrained``: it loads ``pytorch_model.bin`` (a pickle) when there is no
    safetensors file, and builds an empty tokenizer when the tokenizer files are missing.
    """
    names = sorted(p.name for p in path.iterdir())
    if "config.json" not in names:
        raise ModelFileError(
            f"model directory {path} has no config.json; save the model with model.save_pretrained('{path}')"
        )
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ModelFileError(
                f"model directory {path} holds only pickle weights ({', '.join(pickles[:3])}); edgeprune loads "
                "safetensors weights only (unpickling a file can run code). If you trust the file, convert it once: "
                f'python -c "from transformers import AutoModelForCausalLM as M; '
                f"M.from_pretrained('{path}', use_safetensors=False).save_pretrained('{path}')\" "
                "(writes model.safetensors)"
            )
        raise ModelFileError(
            f"model directory {path} has no weights (model.safetensors); save the model with "
            f"model.save_pretrained('{path}')"
        )
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(
            f"{path}/config.json is not valid UTF-8 JSON ({exc}); save the model again with model.save_pretrained"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type", ""), str):
        raise ModelFileError(
            f"{path}/config.json must be a JSON object with a string 'model_type'; save the model again with "
            "model.save_pretrained"
        )
    from safetensors import safe_open

    for name in names:
        if name.endswith(".safetensors"):
            try:
                with safe_open(str(path / name), framework="pt") as fh:
                    list(fh.keys())
            except Exception as exc:  # safetensors' own error types: truncated or corrupt header
                raise ModelFileError(
                    f"{path}/{name} is not a readable safetensors file (truncated or corrupt: {exc}); "
                    "save the model again with model.save_pretrained"
                ) from None
    if tokenizer and not any(n in names for n in TOKENIZER_FILES):
        raise ModelFileError(
            f"model directory {path} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); save the "
            f"tokenizer next to the model with tokenizer.save_pretrained('{path}')"
        )


def load_hf_model(
    name_or_dir: str | Path,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    tokenizer: bool = True,
    attn_implementation: str | None = "eager",
    local_files_only: bool | None = None,
) -> HFModel:
    """``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` on a hub id or a local directory.

    The model is put in eval mode (no dropout: pruning compares deterministic runs).
    ``attn_implementation`` defaults to "eager" so that the reference logits use the
    same plain softmax arithmetic as the adapters.  A local directory is loaded with
    ``local_files_only`` so a machine without network never tries the hub.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(dtype)
    src = str(name_or_dir)
    is_dir = Path(src).is_dir()
    if local_files_only is None:
        local_files_only = is_dir
    if not is_dir and src.startswith((".", "/", "~")):
        raise ModelFileError(
            f"model directory {src} does not exist; give an existing directory or a hub id such as gpt2"
        )
    dev = resolve_device(device)
    if is_dir:
        check_local_model_dir(Path(src), tokenizer)
    kwargs: dict[str, Any] = {
        dtype_keyword(): torch_dtype,
        "local_files_only": local_files_only,
        "use_safetensors": True,  # never unpickle weights (a hub repo with only .bin files is refused)
    }
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(src, **kwargs)
    except Exception as exc:  # transformers raises many types for a damaged config or weights: one message
        if isinstance(exc, EdgePruneError):
            raise
        where = "directory" if is_dir else "hub id"
        raise ModelFileError(
            f"could not load a causal LM from {where} {src} ({type(exc).__name__}: {exc}). Check the path "
            "(config.json and "
            "model.safetensors: edgeprune loads safetensors weights only), or, for a hub id, that the machine "
            "can reach the hub or the model is in the local cache"
        ) from exc
    model.to(dev)  # type: ignore[arg-type]  # transformers types .to() through a decorator
    model.eval()
    tok = None
    if tokenizer:
        try:
            tok = AutoTokenizer.from_pretrained(src, local_files_only=local_files_only)
        except Exception as exc:  # damaged tokenizer files raise many types (JSON, tokenizers' own): one message
            raise ModelFileError(
                f"could not load a tokenizer from {src} ({type(exc).__name__}: {exc}). Save one next to the model "
                "(tokenizer.save_pretrained) or pass tokenizer=False"
            ) from exc
        if len(tok) == 0:
            raise ModelFileError(
                f"the tokenizer loaded from {src} has no tokens (its vocabulary files are missing or empty); "
                "save the model's tokenizer with tokenizer.save_pretrained"
            )
    return HFModel(model, tok)


def adapter_for(model: Any, **options: Any) -> HFAdapterBase:
    """The adapter for ``model``'s architecture; ``options`` go to the adapter (see ``HFAdapterBase``)."""
    import importlib

    arch = type(model).__name__
    if arch not in SUPPORTED_ARCHITECTURES:
        declared = getattr(getattr(model, "config", None), "architectures", None)
        extra = f" (config.architectures = {declared})" if declared else ""
        raise EdgePruneError(
            f"no edge-pruning adapter for architecture {arch}{extra}; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}. Load the model as one of these, or write a ModelAdapter for it"
        )
    module, cls = SUPPORTED_ARCHITECTURES[arch]
    return getattr(importlib.import_module(module), cls)(model, **options)


class HFAdapterBase(ModelAdapter):
    """What every ``transformers`` adapter shares.

    Options:
      * ``stream_dtype`` (default float32): dtype of the tensors the engine mixes.  The
        blocks run in the model's own dtype (e.g. bfloat16: inputs are cast down on entry,
        outputs cast up on exit), so a bf16 model keeps its compute cost while the
        residual mixing and the masks stay float32.  The engine multiplies float32
        masks with the stream, so the stream dtype must match the mask dtype.
      * ``gradient_checkpointing`` (default False): each attention block (from the
        per-reader inputs to the per-head outputs) and each MLP is recomputed in the
        backward pass instead of storing its internals (per-reader norms, q/k/v,
        attention probabilities, MLP hidden).  Only active when gradients are on.
      * ``freeze`` (default True): the model's parameters get ``requires_grad=False``;
        Edge Pruning trains masks only, and frozen weights need no gradient buffers.
    The model is set to eval mode: dropout would make clean and masked runs differ.
    The readout (final norm, unembedding) works position by position (``readout_per_position``).
    """

    shared_head_input = True  # the blocks read one (B, T, D) input for every head
    readout_per_position = True

    def __init__(
        self,
        model: Any,
        stream_dtype: torch.dtype | str = torch.float32,
        gradient_checkpointing: bool = False,
        freeze: bool = True,
    ):
        self.model = model
        model.eval()
        if freeze:
            model.requires_grad_(False)
        self.stream_dtype = resolve_dtype(stream_dtype)
        self.gradient_checkpointing = gradient_checkpointing
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device

    # ----- helpers for subclasses -------------------------------------------
    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.stream_dtype)

    def _heads_through(self, z: torch.Tensor, w_o: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """(H, B, T, D): head h's attention result z (B, H, T, dh) through its rows ``w_o[h]`` (dh, D) of the
        output projection, plus ``bias / H`` added inside the product (the heads' outputs sum to the block's)."""
        B, H, T, dh = z.shape
        zh = z.transpose(0, 1).reshape(H, B * T, dh)
        heads = torch.bmm(zh, w_o) if bias is None else torch.baddbmm(bias / H, zh, w_o)
        return self._out(heads.view(H, B, T, -1))

    def _maybe_checkpoint(self, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _additive_mask(self, T: int, key_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """(B or 1, 1, T, T) additive mask: causal plus key padding.

        A large finite negative (not -inf) keeps rows with no allowed key (a pad query
        under left padding) finite, as ``transformers`` does.
        """
        allowed = torch.ones(T, T, dtype=torch.bool, device=self.device).tril()[None, None]
        if key_mask is not None:
            allowed = allowed & key_mask.to(self.device).bool()[:, None, None, :]
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    @staticmethod
    def _per_head(x: torch.Tensor, n: int) -> torch.Tensor:
        """Accept a shared (B, T, D) input as well as per-reader (B, n, T, D) ones."""
        return x.unsqueeze(1).expand(-1, n, -1, -1) if x.dim() == 3 else x

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float, key_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Softmax attention (B, H, T, dh) from q (B, H, T, dh), k and v (B, KV, T, dh); KV divides H.

        Query head h uses key/value head h // (H / KV), the order of ``repeat_kv``.
        Scores and softmax in float32, like the eager ``transformers`` attention.
        """
        H, KV = q.shape[1], k.shape[1]
        if KV != H:
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
        scores = scores + self._additive_mask(q.shape[2], key_mask, torch.float32)
        probs = torch.softmax(scores, dim=-1).to(v.dtype)
        return torch.matmul(probs, v)

    # ----- ModelAdapter ------------------------------------------------------
    def loss_mask(self, ids: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Every real (non-pad) position; a task narrows this to its target positions."""
        if key_mask is None:
            return torch.ones_like(ids, dtype=torch.bool)
        return key_mask.bool().clone()

    def model_id(self) -> str:
        """ "name:hash" of the config and a sample of every weight: cheap even for 13B models.

        Hashing every byte of a large model takes minutes; the first and last 256 values
        of each tensor plus the config tell two checkpoints apart in practice.  The hash
        ignores where the model was loaded from and its dtype (samples are rounded to
        bfloat16), so one model loaded as ``./m``, ``/abs/m`` or in bf16 has one hash.
        """
        h = hashlib.sha256()
        cfg = {k: v for k, v in self.model.config.to_dict().items() if k not in _NOT_FINGERPRINTED}
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
        for name, p in sorted(self.model.named_parameters()):
            flat = p.detach().reshape(-1)
            sample = torch.cat([flat[:256], flat[-256:]]).to(torch.bfloat16).float().cpu().contiguous()
            h.update(name.encode())
            h.update(sample.numpy().tobytes())
        name = getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__
        return f"{name}:{h.hexdigest()[:16]}"
