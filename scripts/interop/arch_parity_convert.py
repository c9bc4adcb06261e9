#!/usr/bin/env python3
# Runs llama.cpp's convert_hf_to_gguf.py (for arch_parity.sh) with one allowance: a byte-level BPE
# tokenizer whose pre-tokenizer hash the converter's table does not know (every synthetic
# checkpoint's) gets the `tokenizer.ggml.pre` value given here instead of the converter's
# NotImplementedError; it prints a line saying so, and arch_parity.sh reports that key as forced.
# Run it with the converter's own Python (torch, transformers); it imports nothing else first, so
# the converter's gguf-py is the one used.
#
#   arch_parity_convert.py LLAMA_CPP_DIR PRE [convert_hf_to_gguf.py arguments...]
import os
import runpy
import sys


def main():
    if len(sys.argv) < 3:
        print("usage: arch_parity_convert.py LLAMA_CPP_DIR PRE [converter arguments...]", file=sys.stderr)
        return 2
    llama, pre = os.path.abspath(sys.argv[1]), sys.argv[2]
    script = os.path.join(llama, "convert_hf_to_gguf.py")
    sys.path.insert(0, os.path.join(llama, "gguf-py"))
    sys.path.insert(0, llama)
    import conversion.base as base  # the module the converter's classes come from

    original = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            print(f"arch_parity: pre-tokenizer not in the converter's table; tokenizer.ggml.pre forced to '{pre}'",
                  file=sys.stderr)
            return pre

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [script] + sys.argv[3:]
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
