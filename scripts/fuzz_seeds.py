#!/usr/bin/env python3
"""Writes the small seed files of the fuzz targets (tests/fuzz/<target>/) and the tiny model they
come from. Standard library only. Usage:

  scripts/fuzz_seeds.py MODEL_DIR            # the tiny Hugging Face model (config, 2 shards, index,
                                             # tokenizer.json) that `lq` then converts to GGUF seeds
  scripts/fuzz_seeds.py --seeds SEED_DIR     # hand-made seeds: safetensors, legacy imatrix,
                                             # profiles, calibration, configs, shard indexes

scripts/fuzz.sh calls neither: the seeds are committed. Rerun when a format gains a field."""
import json
import os
import random
import struct
import sys

HIDDEN, FF, VOCAB, LAYERS, HEADS, KV_HEADS = 32, 64, 64, 1, 2, 1


def safetensors_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def tiny_config():
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
            "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 128, "rope_theta": 10000.0, "tie_word_embeddings": False,
            "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2}


def tiny_tokenizer():
    # A byte-level BPE over printable ASCII: ids 0-2 special, then characters, then a few merges.
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["\u0120", "e", "l", "o", ",", "1", "2", "3"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for c in chars:
        if c not in vocab and len(vocab) < VOCAB - 8:
            vocab[c] = len(vocab)
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("\u0120", "w"), ("o", "r"), ("\u0120w", "or")]
    for a, b in merges:
        if len(vocab) < VOCAB:
            vocab[a + b] = len(vocab)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, t in enumerate(["<unk>", "<s>", "</s>"])]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}


def tiny_model(out):
    rnd = random.Random(7)
    os.makedirs(out, exist_ok=True)

    def mat(rows, cols):
        return f32([rnd.uniform(-0.5, 0.5) for _ in range(rows * cols)])

    head_dim = HIDDEN // HEADS
    layer = []
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        layer += [(p + "input_layernorm.weight", "F32", [HIDDEN], f32([1.0] * HIDDEN)),
                  (p + "post_attention_layernorm.weight", "F32", [HIDDEN], f32([1.0] * HIDDEN)),
                  (p + "self_attn.q_proj.weight", "F32", [HIDDEN, HIDDEN], mat(HIDDEN, HIDDEN)),
                  (p + "self_attn.k_proj.weight", "F32", [KV_HEADS * head_dim, HIDDEN], mat(KV_HEADS * head_dim, HIDDEN)),
                  (p + "self_attn.v_proj.weight", "F32", [KV_HEADS * head_dim, HIDDEN], mat(KV_HEADS * head_dim, HIDDEN)),
                  (p + "self_attn.o_proj.weight", "F32", [HIDDEN, HIDDEN], mat(HIDDEN, HIDDEN)),
                  (p + "mlp.gate_proj.weight", "F32", [FF, HIDDEN], mat(FF, HIDDEN)),
                  (p + "mlp.up_proj.weight", "F32", [FF, HIDDEN], mat(FF, HIDDEN)),
                  (p + "mlp.down_proj.weight", "F32", [HIDDEN, FF], mat(HIDDEN, FF))]
    first = [("model.embed_tokens.weight", "F32", [VOCAB, HIDDEN], mat(VOCAB, HIDDEN))] + layer[:5]
    second = layer[5:] + [("model.norm.weight", "F32", [HIDDEN], f32([1.0] * HIDDEN)),
                          ("lm_head.weight", "F32", [VOCAB, HIDDEN], mat(VOCAB, HIDDEN))]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {}
    for fname, part in zip(names, [first, second]):
        with open(os.path.join(out, fname), "wb") as f:
            f.write(safetensors_bytes(part, {"format": "pt"}))
        for t in part:
            weight_map[t[0]] = fname
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(tiny_config(), f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tiny_tokenizer(), f, indent=1)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>"}, f)


def legacy_imatrix(entries, chunks=4, dataset="calibration.txt"):
    out = struct.pack("<i", len(entries))
    for name, ncall, values in entries:
        out += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", ncall, len(values)) + f32(values)
    return out + struct.pack("<ii", chunks, len(dataset)) + dataset.encode()


def seeds(root):
    def put(target, name, data):
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    rnd = random.Random(11)
    # safetensors
    put("safetensors", "two-tensors.safetensors", safetensors_bytes(
        [("a", "F32", [2, 3], f32([1, 2, 3, 4, 5, 6])), ("b", "BF16", [4], b"\x80\x3f" * 4)], {"format": "pt"}))
    put("safetensors", "all-dtypes.safetensors", safetensors_bytes(
        [(dt, dt, [2], b"\x01" * (2 * sz)) for dt, sz in
         [("F64", 8), ("F32", 4), ("F16", 2), ("BF16", 2), ("I64", 8), ("I32", 4), ("I16", 2), ("I8", 1),
          ("U8", 1), ("BOOL", 1)]]))
    put("safetensors", "scalar-and-empty.safetensors", safetensors_bytes(
        [("s", "F32", [], f32([1.5])), ("e", "F16", [0, 4], b"")]))
    # legacy imatrix (.dat)
    put("imatrix", "two-entries.dat", legacy_imatrix(
        [("blk.0.attn_q.weight", 4, [rnd.uniform(0, 2) for _ in range(32)]),
         ("blk.0.ffn_down.weight", 4, [rnd.uniform(0, 2) for _ in range(64)])]))
    put("imatrix", "no-trailer.dat", legacy_imatrix([("output.weight", 1, [1.0] * 8)])[:-4 - 4 - 15])
    # profiles
    put("dqprofile", "rules.dqprofile", json.dumps({
        "format": "lq.dqprofile", "version": 1, "name": "fuzz-seed", "description": "seed",
        "layer_configs": [{"layer_pattern": "blk\\.[0-3]\\..*", "quantization_method": "Q6_K", "rationale": "first"},
                          {"layer_pattern": "*ffn_down*", "layers": "0-2", "quantization_method": "Q5_K"}],
        "default_method": "Q4_K", "target_bpw": 4.5, "candidates": ["Q4_K", "Q5_K", "Q6_K"],
        "tensor_types": {"output.weight": "Q8_0"}, "provenance": {"tool": "seed"}}, indent=2))
    put("dqprofile", "minimal.dqprofile", json.dumps({"name": "m", "layer_configs": []}))
    put("dqprofile", "size.dqprofile", json.dumps({"preset": "p", "layer_configs": [
        {"layer_pattern": "output.weight", "quantization_method": "F16"}], "target_size_bytes": 1000000}))
    # calibration: the first byte picks .json (0), .jsonl (1), .txt (2)
    put("calibration", "list.json", b"\x00" + json.dumps(["The first sample.", {"text": "The second one."}]).encode())
    put("calibration", "samples.json", b"\x00" + json.dumps({"samples": [{"text": "one"}, "two"]}).encode())
    put("calibration", "lines.jsonl", b"\x01" + b'{"text": "a line"}\n\n"a string line"\n{"text": "x\\u00e9"}\n')
    put("calibration", "plain.txt", b"\x02" + b" = Valkyria Chronicles = \n\n Senj\xc5\x8d no Valkyria 3 is a game.\n")
    # config.json
    put("config", "llama.json", json.dumps(tiny_config(), indent=2))
    c = dict(tiny_config(), rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    put("config", "llama3-rope.json", json.dumps(c))
    q = dict(tiny_config(), model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True,
             sliding_window=64, use_sliding_window=False)
    put("config", "qwen2.json", json.dumps(q))
    m = dict(tiny_config(), model_type="mistral", architectures=["MistralForCausalLM"], head_dim=16)
    put("config", "mistral.json", json.dumps(m))
    w8 = dict(tiny_config(), quantization_config={
        "quant_method": "compressed-tensors", "format": "int-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"],
                                      "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
                                      "input_activations": {"num_bits": 8, "type": "int", "symmetric": True,
                                                            "strategy": "token", "dynamic": True}}}})
    put("config", "w8a8.json", json.dumps(w8))
    vl = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "text_config": tiny_config()}
    put("config", "text-config.json", json.dumps(vl))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        seeds(sys.argv[2])
    elif len(sys.argv) == 2:
        tiny_model(sys.argv[1])
    else:
        sys.exit(__doc__)
