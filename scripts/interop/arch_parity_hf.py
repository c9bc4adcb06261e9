#!/usr/bin/env python3
# transformers' perplexity of a Hugging Face checkpoint on the first CTX tokens of a text, computed
# the way llama-perplexity and `lq perplexity` do (BOS, then the text's tokens; the second half of
# the chunk scored), in float32: the reference for the
# engine's arithmetic on an architecture (arch_parity.sh step "hf"). Needs torch and transformers.
#
#   arch_parity_hf.py HF_DIR TEXT CTX [IDS_JSON]   prints {"perplexity": P, "tokens": N} as JSON
# IDS_JSON: `lq tokenize --format json` of the text's start, scored instead of transformers' own
# tokenization (so that only the arithmetic is compared).
import json
import math
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    if len(sys.argv) not in (4, 5):
        print("usage: arch_parity_hf.py HF_DIR TEXT CTX [IDS_JSON]", file=sys.stderr)
        return 2
    path, text_path, ctx = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = json.load(open(f"{path}/config.json"))
    cfg = cfg.get("text_config", cfg) if "bos_token_id" not in cfg else cfg
    if len(sys.argv) == 5:
        body = json.load(open(sys.argv[4]))["tokens"]
        bos = cfg.get("bos_token_id")
    else:
        tok = AutoTokenizer.from_pretrained(path)
        with open(text_path, encoding="utf-8") as f:
            text = f.read()
        bos = cfg.get("bos_token_id", tok.bos_token_id)
        body = tok(text[: 40 * ctx], add_special_tokens=False)["input_ids"]
    # the stream starts with BOS (llama-perplexity tokenizes with it), and so does the chunk
    ids = ([bos] if bos is not None else []) + body
    ids = ids[:ctx]
    if len(ids) < ctx:
        print(f"the text holds {len(ids)} tokens, fewer than {ctx}", file=sys.stderr)
        return 1
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    first = ctx // 2
    nll = -sum(logp[j, ids[j + 1]].item() for j in range(first, ctx - 1))
    print(json.dumps({"perplexity": math.exp(nll / (ctx - 1 - first)), "tokens": ctx}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
