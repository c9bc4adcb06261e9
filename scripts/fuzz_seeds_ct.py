#!/usr/bin/env python3
"""Writes the compressed-tensors checkpoints the `fp8_checkpoint` and `w8a8_checkpoint` fuzz
targets' seeds come from, made by llm-compressor itself from the tiny Llama of fuzz_seeds.py:
FP8 E4M3 per channel (dynamic activations), per tensor (static input_scale), per [16, 16] and
[128, 128] block, and int8 weight-only (W8A16, per channel; packed, and int-quantized). The int8 W8A8 seeds come from `lq quantize ...
smoothquant --smoothquant` (docs/fuzzing.md). Needs torch, transformers and llm-compressor (a
virtual environment outside the repository); not run by the build or CI.

  scripts/fuzz_seeds.py /tmp/tiny && python scripts/fuzz_seeds_ct.py /tmp/tiny OUT_DIR [NAME...]
Each checkpoint lands in OUT_DIR/<name>/ (config.json with its quantization_config,
model.safetensors); the targets take the .safetensors, a scheme byte first."""
import sys

import torch
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import QuantizationModifier
from transformers import AutoModelForCausalLM


def word_tokenizer():
    """llm-compressor wants a processor beside a dataset; the inputs are token ids already, so a
    word-level tokenizer over the tiny vocabulary does."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 64)}}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                   unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def fp8(strategy, dynamic_inputs, block=None):
    w = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy=strategy, dynamic=False,
                         block_structure=block)
    if dynamic_inputs:
        a = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="token", dynamic=True)
    else:
        a = QuantizationArgs(num_bits=8, type="float", symmetric=True, strategy="tensor", dynamic=False)
    return QuantizationScheme(targets=["Linear"], weights=w, input_activations=a)


def w8a16():
    w = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel", dynamic=False)
    return QuantizationScheme(targets=["Linear"], weights=w)


SCHEMES = {
    "fp8-channel-dynamic": (lambda: fp8("channel", True), False),
    "fp8-tensor-static": (lambda: fp8("tensor", False), True),
    "fp8-block": (lambda: fp8("block", True, [16, 16]), False),
    "fp8-block-128": (lambda: fp8("block", True, [128, 128]), False),  # FP8_BLOCK's blocks: larger than the tiny matrices
    "w8a16-channel": (w8a16, False),  # llm-compressor packs 8-bit weights (pack-quantized) by default
}
# Saved in another compressed-tensors format than llm-compressor's default for the scheme.
FORMATS = {"w8a16-int": ("w8a16-channel", "int-quantized")}


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    only = sys.argv[3:]
    jobs = [(name, name, None) for name in SCHEMES] + [(name, base, f) for name, (base, f) in FORMATS.items()]
    for name, base, form in jobs:
        scheme, needs_data = SCHEMES[base]
        if only and name not in only:
            continue
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, device_map="cpu")
        recipe = [QuantizationModifier(config_groups={"group_0": scheme()}, ignore=["lm_head"])]
        if needs_data:  # static input scales: a few random token sequences to observe
            from datasets import Dataset
            ids = torch.randint(3, 64, (4, 16)).tolist()
            ds = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * 16 for _ in ids]})
            oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=16, num_calibration_samples=4,
                    processor=word_tokenizer())
        else:
            oneshot(model=model, recipe=recipe)
        if form:
            model.save_pretrained(f"{out}/{name}", save_compressed=True, quantization_format=form)
        else:
            model.save_pretrained(f"{out}/{name}", save_compressed=True)
        print(name, "->", f"{out}/{name}", flush=True)


if __name__ == "__main__":
    main()
