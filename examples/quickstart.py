import jax
import numpy as np

import ffnkv
from analysis.patching import head_patching, restored_fraction
from ffnkv.io.load import load_model
from ffnkv.prompts import encode_prompts

model = load_model("smollm2")  # or a run dir, a Hugging Face dir (GPT-2, BERT, Llama), a .gguf file
enc = encode_prompts(model.tokenizer, ["The Eiffel Tower is located in the city of",
                                       "The Colosseum is located in the city of"],
                     ["Eiffel Tower", "Colosseum"], ["Paris", "Rome"])
clean, corrupt_tokens = enc.select([0]), enc.tokens[1:]  # the Colosseum prompt is the corrupted run
pos, paris = clean.predict_pos[0], clean.target[0]

# a jitted forward: out.logits [B,T,V]; out.acts.ffn [L,B,T,F] (the memory coefficients m), and with
# capture_heads each head's attention pattern [L,B,H,T,T] and output [L,B,T,H,D]
out = model.forward(clean.tokens, capture_heads=True)
print(f"P(Paris) = {jax.nn.softmax(out.logits[0, pos])[paris]:.3f}")

# one analysis: patch each (layer, head) of the clean run into the corrupted one (one compiled program)
share_LH = restored_fraction(head_patching(model.params, model.cfg, clean, corrupt_tokens))[0]
top = np.argsort(-share_LH, axis=None)[:3]
for layer, head in zip(*np.unravel_index(top, share_LH.shape)):
    # a hook: hooks are arrays, so each new head reuses the compiled program
    ablated = model.forward(clean.tokens, ffnkv.ablate_heads(model.cfg, layer, head)).logits
    looks_at = model.tokenizer.decode([int(clean.tokens[0, out.acts.attn_pattern[layer, 0, head, pos].argmax()])])
    print(f"head {layer}.{head}: restores {share_LH[layer, head]:.1%} of P(Paris), attends most to {looks_at!r}; "
          f"ablated, P(Paris) = {jax.nn.softmax(ablated[0, pos])[paris]:.3f}")
