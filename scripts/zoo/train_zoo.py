#!/usr/bin/env python3
"""Trains the small models of the quantization zoo (see scripts/zoo/README.md).

Each zoo member gets its own tokenizer (SentencePiece BPE or byte-level BPE, trained here), its own
architecture (Llama with GQA, Mistral without GQA, Qwen2 with q/k/v biases and tied embeddings, Qwen3
with q/k norms, Gemma 2 with soft-caps and a sliding window, Phi-3's fused projections, a Mixtral
mixture of experts), width,
depth, training text and saved dtype. Everything is seeded: the same corpus and the same torch build
give the same files. Output: one Hugging Face directory per model (config.json, model.safetensors,
tokenizer files) plus eval.txt, the held-out text of that model's training distribution.

Usage: train_zoo.py --corpus ../shared/corpus --out /work/zoo [--only NAME ...] [--steps-scale X]
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch

# name: architecture, sizes, tokenizer, text, dtype, steps. Chosen to differ in what matters to
# quantization while each trains in minutes on two CPU cores.
ZOO = {
    "mistral-wiki-bpe8k": dict(
        arch="mistral", hidden=256, layers=3, heads=4, kv_heads=4, ffn=768,
        tok="bpe-gpt2", vocab=8192, text="wiki", dtype="float16", steps=300, lr=3e-3,
        what="Mistral-style (no GQA, 4/4 heads), 3 layers, hidden 256, ffn 768, byte-level BPE 8k (GPT-2 "
             "pre-tokenizer), WikiText-2 prose, F16"),
    "llama-gqa-sp4k": dict(
        arch="llama", hidden=256, layers=4, heads=8, kv_heads=2, ffn=512,
        tok="spm", vocab=4000, text="stories", dtype="bfloat16", steps=300, lr=3e-3,
        what="Llama, GQA 8/2 heads (head_dim 32), the deepest here (4 layers) with a narrow FFN (512), SentencePiece BPE 4k, "
             "TinyStories, BF16"),
    "qwen2-tied-bpe16k": dict(
        arch="qwen2", hidden=256, layers=2, heads=4, kv_heads=2, ffn=768,
        tok="bpe-qwen2", vocab=16384, text="mix", dtype="bfloat16", steps=300, lr=3e-3,
        what="Qwen2, q/k/v biases, tied embeddings, GQA 4/2, 2 layers, hidden 256, byte-level BPE 16k (Qwen2 "
             "pre-tokenizer), TinyStories + WikiText-2, BF16"),
    "llama-wide-sp32k": dict(
        arch="llama", hidden=256, layers=2, heads=4, kv_heads=4, ffn=1536,
        tok="spm", vocab=32000, text="mix", dtype="float16", steps=200, lr=3e-3,
        what="Llama without GQA (4/4 heads), shallow with a wide FFN (2 layers, ffn 1536), SentencePiece BPE 32k, "
             "TinyStories + WikiText-2, F16"),
    "qwen3-tied-bpe8k": dict(
        arch="qwen3", hidden=256, layers=3, heads=4, kv_heads=2, ffn=768, tied=True,
        tok="bpe-qwen2", vocab=8192, text="mix", dtype="bfloat16", steps=2000, lr=3e-3,
        what="Qwen3: per-head q/k RMS norms, no biases, tied embeddings, GQA 4/2, 3 layers, hidden 256, ffn 768, "
             "byte-level BPE 8k (Qwen2 pre-tokenizer), TinyStories + WikiText-2, BF16"),
    "gemma2-sp8k": dict(
        arch="gemma2", hidden=256, layers=4, heads=4, kv_heads=2, ffn=768, tied=True, window=128,
        tok="spm", vocab=8000, text="stories", dtype="bfloat16", steps=2000, lr=3e-3,
        what="Gemma 2: sandwich norms (1 + w), GeLU-tanh, embeddings scaled by sqrt(hidden), attention and final "
             "soft-caps, sliding window 128 on alternate layers (so it bites at ctx 256), tied embeddings, GQA 4/2, "
             "4 layers, hidden 256, ffn 768, SentencePiece BPE 8k, TinyStories, BF16"),
    "phi3-sp4k": dict(
        arch="phi3", hidden=256, layers=3, heads=4, kv_heads=4, ffn=768,
        tok="spm", vocab=4000, text="wiki", dtype="bfloat16", steps=2000, lr=3e-3,
        # llama.cpp's vocabulary loader looks these up in any model whose name says phi3.
        spm_symbols=["<|endoftext|>", "<|end|>"],
        what="Phi-3: fused qkv_proj and gate_up_proj, no GQA (4/4 heads), 3 layers, hidden 256, ffn 768, "
             "SentencePiece BPE 4k with Phi-3's <|endoftext|> and <|end|>, WikiText-2 prose, BF16"),
    "mixtral-moe-sp4k": dict(
        arch="mixtral", hidden=256, layers=2, heads=4, kv_heads=2, ffn=512, experts=4, top_k=2,
        tok="spm", vocab=4000, text="stories", dtype="bfloat16", steps=2000, lr=3e-3,
        what="Mixtral: 4 trained experts (ffn 512 each), top 2, with the load-balancing loss, GQA 4/2, 2 layers, "
             "hidden 256, SentencePiece BPE 4k, TinyStories, BF16"),
}

# Rows of every quantized tensor are multiples of 256 (hidden and ffn), so k-quants and i-quants apply
# to all of them as on real models instead of falling back to legacy types.
CTX = 256
BATCH = 2
SEED = 1234


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def load_texts(corpus):
    """(train, held-out) text per kind. WikiText-2 here is only the test split: its first 90% of lines
    train, the last 10% are held out (whole articles; the split is at an article heading)."""
    stories = open(os.path.join(corpus, "tinystories-train.txt"), encoding="utf-8").read()
    stories_eval = open(os.path.join(corpus, "eval.txt"), encoding="utf-8").read()
    wiki_lines = open(os.path.join(corpus, "wikitext2-test.raw"), encoding="utf-8").read().split("\n")
    cut = int(len(wiki_lines) * 0.9)
    while cut < len(wiki_lines) and not wiki_lines[cut].startswith(" = ") or wiki_lines[cut].startswith(" = = "):
        cut += 1
    wiki = "\n".join(wiki_lines[:cut]) + "\n"
    wiki_eval = "\n".join(wiki_lines[cut:])
    return {
        "stories": (stories, stories_eval),
        "wiki": (wiki, wiki_eval),
        # Interleave by paragraph so both kinds spread over the whole stream.
        "mix": (mix_paragraphs(stories, wiki), mix_paragraphs(stories_eval[: len(wiki_eval)], wiki_eval)),
    }


def mix_paragraphs(a, b):
    pa = [p for p in a.split("\n\n") if p.strip()]
    pb = [p for p in b.split("\n") if p.strip()]
    out, i, j = [], 0, 0
    while i < len(pa) or j < len(pb):
        if i < len(pa):
            out.append(pa[i]); i += 1
        if j < len(pb):
            out.append(pb[j]); j += 1
    return "\n\n".join(out) + "\n"


def train_spm(text, vocab, out_dir, work, symbols=()):
    import sentencepiece as spm
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(SEED)
    src = os.path.join(work, "spm-train.txt")
    with open(src, "w", encoding="utf-8") as f:
        f.write(text)
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        input=src, model_prefix=prefix, model_type="bpe", vocab_size=vocab, character_coverage=1.0,
        byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, max_sentence_length=1 << 16, num_threads=2,
        minloglevel=2, hard_vocab_limit=True, user_defined_symbols=list(symbols))
    shutil.copy(prefix + ".model", os.path.join(out_dir, "tokenizer.model"))
    spm_tokenizer_files(out_dir)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    return (lambda s: [1] + sp.encode(s)), sp.get_piece_size(), dict(bos=1, eos=2)


def spm_tokenizer_files(out_dir):
    """tokenizer.json and tokenizer_config.json converted by transformers from the tokenizer.model
    in out_dir (from_pretrained converts the vocabulary and merges; the constructor alone does not)."""
    from transformers import LlamaTokenizer
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(out_dir, f)):
            os.remove(os.path.join(out_dir, f))
    tok = LlamaTokenizer.from_pretrained(out_dir, legacy=True, add_bos_token=True, add_eos_token=False)
    tok.save_pretrained(out_dir)


QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")


def train_bpe(text, vocab, out_dir, flavour):
    from tokenizers import Tokenizer, Regex, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    if flavour == "bpe-qwen2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>"]
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(specials), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer=trainer)
    tok.add_special_tokens(specials)
    n = tok.get_vocab_size()
    eos = tok.token_to_id("<|endoftext|>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   model_max_length=2 * CTX)
    fast.save_pretrained(out_dir)
    return (lambda s: tok.encode(s).ids), n, dict(bos=None, eos=eos)


def encode_stream(encode, text, eos):
    ids = []
    for doc in text.split("\n\n"):
        if doc.strip():
            ids.extend(encode(doc))
            ids.append(eos)
    return np.array(ids, dtype=np.int64)


def make_model(spec, n_vocab, special):
    import transformers as tf
    common = dict(vocab_size=n_vocab, hidden_size=spec["hidden"], intermediate_size=spec["ffn"],
                  num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                  num_key_value_heads=spec["kv_heads"], max_position_embeddings=2 * CTX, rms_norm_eps=1e-5,
                  rope_theta=10000.0, bos_token_id=special["bos"], eos_token_id=special["eos"],
                  tie_word_embeddings=spec.get("tied", spec["arch"] == "qwen2"), initializer_range=0.02)
    head_dim = spec["hidden"] // spec["heads"]
    if spec["arch"] == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=head_dim, use_sliding_window=False, **common))
    if spec["arch"] == "gemma2":
        # eager attention: the soft-cap of the scores is only applied there; query scale 1/sqrt(head_dim).
        cfg = tf.Gemma2Config(head_dim=head_dim, query_pre_attn_scalar=head_dim, sliding_window=spec["window"],
                              pad_token_id=0, hidden_activation="gelu_pytorch_tanh", **common)
        cfg._attn_implementation = "eager"
        return tf.Gemma2ForCausalLM(cfg)
    if spec["arch"] == "phi3":
        # Phi3Config's default pad id (32000) is outside a small vocabulary.
        return tf.Phi3ForCausalLM(tf.Phi3Config(pad_token_id=special["eos"], sliding_window=None, **common))
    if spec["arch"] == "mixtral":
        cfg = tf.MixtralConfig(num_local_experts=spec["experts"], num_experts_per_tok=spec["top_k"],
                               output_router_logits=True, router_aux_loss_coef=0.02, sliding_window=None,
                               head_dim=head_dim, **common)
        return tf.MixtralForCausalLM(cfg)
    if spec["arch"] == "llama":
        cfg = tf.LlamaConfig(**common)
        return tf.LlamaForCausalLM(cfg)
    if spec["arch"] == "mistral":
        cfg = tf.MistralConfig(sliding_window=None, head_dim=spec["hidden"] // spec["heads"], **common)
        return tf.MistralForCausalLM(cfg)
    cfg = tf.Qwen2Config(use_sliding_window=False, **common)
    return tf.Qwen2ForCausalLM(cfg)


def train_one(name, spec, texts, out_root, steps_scale, threads):
    out_dir = os.path.join(out_root, name)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    random.seed(SEED); np.random.seed(SEED); torch.manual_seed(SEED)
    train_text, eval_text = texts[spec["text"]]
    log(f"{name}: tokenizer ({spec['tok']}, {spec['vocab']})")
    if spec["tok"] == "spm":
        encode, n_vocab, special = train_spm(train_text, spec["vocab"], tmp, tmp, spec.get("spm_symbols", ()))
    else:
        encode, n_vocab, special = train_bpe(train_text, spec["vocab"], tmp, spec["tok"])
    for f in ("spm-train.txt", "spm.model", "spm.vocab"):
        if os.path.exists(os.path.join(tmp, f)):
            os.remove(os.path.join(tmp, f))
    data = encode_stream(encode, train_text, special["eos"])
    log(f"{name}: vocab {n_vocab}, {len(data)} training tokens")
    model = make_model(spec, n_vocab, special)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{name}: {n_params/1e6:.2f}M parameters")
    steps = max(50, int(spec["steps"] * steps_scale))
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], betas=(0.9, 0.95), weight_decay=0.1)
    warm = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    g = np.random.default_rng(SEED)
    model.train()
    t0 = time.time()
    ema = None
    for step in range(steps):
        starts = g.integers(0, len(data) - CTX - 1, size=BATCH)
        batch = torch.from_numpy(np.stack([data[s:s + CTX + 1] for s in starts]))
        out = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone())
        # HF shifts labels itself; pass the inputs as labels. The extra token is unused.
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        l = out.loss.item()
        ema = l if ema is None else 0.98 * ema + 0.02 * l
        if step % 50 == 0 or step == steps - 1:
            log(f"{name}: step {step}/{steps} loss {l:.3f} (ema {ema:.3f}) {time.time()-t0:.0f}s")
    model.eval()
    model.config.output_router_logits = False  # the held-out loss without a mixture's balancing term
    # Held-out loss on the evaluation text.
    ev = encode_stream(encode, eval_text[:200000], special["eos"])
    with torch.no_grad():
        losses = []
        for s in range(0, min(len(ev) - CTX - 1, 64 * CTX), CTX):
            x = torch.from_numpy(ev[s:s + CTX])[None]
            losses.append(model(input_ids=x, labels=x.clone()).loss.item())
    ppl = math.exp(sum(losses) / len(losses))
    log(f"{name}: held-out ppl {ppl:.2f} (vocab {n_vocab})")
    dtype = getattr(torch, spec["dtype"])
    model = model.to(dtype)
    model.config.torch_dtype = spec["dtype"]
    model.save_pretrained(tmp, safe_serialization=True)
    # The config in the file must say the dtype it holds.
    cfgp = os.path.join(tmp, "config.json")
    cfg = json.load(open(cfgp))
    cfg["torch_dtype"] = spec["dtype"]
    cfg["dtype"] = spec["dtype"]
    json.dump(cfg, open(cfgp, "w"), indent=2)
    with open(os.path.join(tmp, "eval.txt"), "w", encoding="utf-8") as f:
        f.write(eval_text)
    info = dict(name=name, what=spec["what"], params=n_params, vocab=n_vocab, steps=steps,
                final_train_loss_ema=round(ema, 4), heldout_ppl_torch=round(ppl, 3),
                train_seconds=round(time.time() - t0), torch=torch.__version__, threads=threads, seed=SEED)
    json.dump(info, open(os.path.join(tmp, "zoo.json"), "w"), indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)
    log(f"{name}: written to {out_dir}")
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus")
    ap.add_argument("--out")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--steps-scale", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spm-files", metavar="DIR", help="only (re)write DIR's tokenizer.json from its tokenizer.model")
    a = ap.parse_args()
    if a.spm_files:
        spm_tokenizer_files(a.spm_files)
        return
    if not a.corpus or not a.out:
        ap.error("--corpus and --out are required")
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    texts = load_texts(a.corpus)
    os.makedirs(a.out, exist_ok=True)
    names = a.only or list(ZOO)
    for n in names:
        if n not in ZOO:
            sys.exit(f"unknown zoo model '{n}' (have: {', '.join(ZOO)})")
    for n in names:
        train_one(n, ZOO[n], texts, a.out, a.steps_scale, a.threads)


if __name__ == "__main__":
    main()
