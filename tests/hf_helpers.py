"""Tiny ``transformers`` models and locally built tokenizers, shared by the language-model tests.

Nothing is downloaded: tokenizers are built with the ``tokenizers`` library (word-level over the
template tasks' own vocabulary, so every name, pronoun and two-digit year is one token), models
are random ``GPT2Config`` / ``LlamaConfig`` ones saved with ``save_pretrained`` so the real
``from_pretrained`` path is exercised.
"""

from __future__ import annotations

from pathlib import Path

import torch

# "1743" -> "17" "43", like GPT-2's year tokens; punctuation on its own; then whitespace
_DIGIT_PAIRS = r"\d\d"


def pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_DIGIT_PAIRS), "isolated"),
            pre_tokenizers.Punctuation("isolated"),
            pre_tokenizers.Whitespace(),
        ]
    )


def word_level_tokenizer(texts: list[str], bos: bool = False):
    """A fast word-level tokenizer over the words of ``texts`` ([UNK]=0, [PAD]=1, optional [BOS])."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizer()
    words = sorted({w for t in texts for w, _ in pre.pre_tokenize_str(t)})
    table = {"[UNK]": 0, "[PAD]": 1}
    if bos:
        table["[BOS]"] = 2
    table.update({w: i + len(table) for i, w in enumerate(words)})
    tok = Tokenizer(models.WordLevel(table, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    extra = {"bos_token": "[BOS]"} if bos else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", **extra)


def task_corpus() -> list[str]:
    """Every word the generated tasks (IOI, GT, GP, boolean IP/FS) and the small JSONL tests use."""
    from edgeprune.pruning.tasks import boolean_expressions as be
    from edgeprune.pruning.tasks import gendered_pronoun, greater_than, ioi, vocab

    return [
        *ioi.TEMPLATES,
        *vocab.NAMES,
        *vocab.PLACES,
        *vocab.OBJECTS,
        *vocab.GT_NOUNS,
        *greater_than.TEMPLATES,
        *gendered_pronoun.TEMPLATES,
        *greater_than.YEAR_CLASSES,
        "he she True False not and or ( ) is",
        be.instruction_prompt("x")[0],
        be.few_shot_prompt("x")[0],
        "1 2 3 4 5 6 7 8 9 + =",
    ]


def task_tokenizer():
    return word_level_tokenizer(task_corpus())


def tiny_gpt2(
    vocab_size: int, n_positions: int = 160, seed: int = 0, n_layer: int = 2, n_head: int = 4, n_embd: int = 32
):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_inner=2 * n_embd,
        bos_token_id=1,
        eos_token_id=1,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.3,
    )
    return GPT2LMHeadModel(cfg)


def tiny_llama(vocab_size: int, heads: int = 4, kv_heads: int = 2, seed: int = 1, layers: int = 2, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=48,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        initializer_range=0.3,
    )
    return LlamaForCausalLM(cfg)


def save_model(model, tokenizer, path: Path) -> Path:
    """``save_pretrained`` of model and tokenizer into ``path`` (safetensors, no pickle)."""
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def bpe_tokenizer():
    """Byte-level BPE trained on a few sentences: covers any text, and rare words split into several tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    sentences = [
        "The cat sat on the mat.",
        "The dog ran to the park.",
        "1 + 2 = 3",
        "1 + 5 = 6",
        "Mary gave a book to John.",
        "John gave a book to Mary.",
        "the the the cat cat dog",
    ] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(sentences, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
