#!/usr/bin/env python3
# Perplexity of a W4A16 compressed-tensors directory written by `lq quantize MODEL gptq` as
# transformers runs it (compressed-tensors decompresses the packed weights), with
# llama-perplexity's method: chunks of CTX tokens, the first replaced by BOS, the second half
# scored. Compare with gptq_quality_bench's row for the same settings (the engine on the
# dequantized weights). Needs a virtual environment OUTSIDE the repository:
#   python3 -m venv /work/venv-ct && /work/venv-ct/bin/pip install torch transformers compressed-tensors
#   /work/venv-ct/bin/python benchmarks/gptq_ct_transformers_ppl.py OUTDIR EVAL.txt [CHUNKS] [CTX]
import json
import math
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    d, eval_path = sys.argv[1], sys.argv[2]
    n_chunks = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    ctx = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d)
    ids = [tok.bos_token_id] + tok(open(eval_path).read(), add_special_tokens=False)["input_ids"]
    nll, scored, done = 0.0, 0, 0
    with torch.no_grad():
        for c in range(n_chunks):
            ch = ids[c * ctx:(c + 1) * ctx]
            if len(ch) < ctx:
                break
            ch = [tok.bos_token_id] + ch[1:]
            lp = torch.log_softmax(model(torch.tensor([ch])).logits[0].float(), -1)
            for i in range(ctx // 2, ctx - 1):
                nll -= lp[i, ch[i + 1]].item()
                scored += 1
            done += 1
    print(json.dumps({"chunks": done, "ctx": ctx, "scored": scored, "ppl": math.exp(nll / scored)}))


if __name__ == "__main__":
    main()
