#!/usr/bin/env python3
# Tokenizer files written by `lq convert X.gguf gptq|compressed-tensors` as transformers reads
# them: AutoTokenizer on the converted directory and on the original checkpoint must give the
# same ids for paragraphs of a text and for its first 20,000 characters, and decode alike.
# Needs a virtual environment OUTSIDE the repository:
#   python3 -m venv /work/venv-tok && /work/venv-tok/bin/pip install transformers sentencepiece protobuf
#   /work/venv-tok/bin/python benchmarks/tokfiles_transformers_check.py ORIGINAL_DIR CONVERTED_DIR TEXT.txt
import sys

from transformers import AutoTokenizer


def main():
    orig, mine, text_path = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(text_path, encoding="utf-8").read()
    paras = [p for p in text.split("\n\n") if len(p) > 300][:20]
    a = AutoTokenizer.from_pretrained(orig)
    b = AutoTokenizer.from_pretrained(mine)
    print(f"original: {type(a).__name__}, converted: {type(b).__name__}")
    same, ntok = 0, 0
    for p in paras:
        x, y = a(p)["input_ids"], b(p)["input_ids"]
        same += x == y
        ntok += len(x)
        if x != y:
            i = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
            print("differs at token", i, x[max(0, i - 3):i + 5], y[max(0, i - 3):i + 5])
    head = text[:20000]
    x, y = a(head)["input_ids"], b(head)["input_ids"]
    print(f"{same}/{len(paras)} paragraphs identical ({ntok} tokens); first 20000 characters: "
          f"{'identical' if x == y else 'DIFFERENT'} ({len(x)} tokens); decode {'equal' if a.decode(x) == b.decode(y) else 'DIFFERENT'}")
    sys.exit(0 if same == len(paras) and x == y else 1)


if __name__ == "__main__":
    main()
