"""icl development diagnostic (dev seeds only): linear-probe R^2 for w_hat_k at the query token and at the example token
of every layer, from a run's clean checkpoint. Usage: python experiments/icl/dev/probe_positions.py RUN_DIR/checkpoints/clean/last.ckpt N_LAYER"""
import sys, torch, numpy as np
from toyrepro.core.transformer import GPTConfig
from toyrepro.icl.model import ICLTransformer
from toyrepro.icl.tasks import sample_prompts, interleave
from toyrepro.icl.probe import probe_r2
from toyrepro.icl.baselines import least_squares_weights
torch.set_num_threads(1)
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
sd = {k.removeprefix("model."): v for k, v in ck["state_dict"].items()}
L = int(sys.argv[2])
m = ICLTransformer(GPTConfig(vocab_size=1, block_size=32, n_layer=L, n_head=2, n_embd=64), 5)
m.load_state_dict(sd); m.eval()
p = sample_prompts(4000, 5, 11, torch.Generator().manual_seed(5))
tok = interleave(p.xs, p.ys)
with torch.no_grad():
    _, hs = m(tok, output_hidden_states=True)
hs = torch.stack(hs)  # (L+1, n, 2K, C)
for k in (5, 7, 10):
    wh = least_squares_weights(p.xs[:, :k], p.ys[:, :k]).numpy()
    q = [probe_r2(hs[l, :, 2 * k].numpy(), wh, 1e-3) for l in range(L + 1)]
    e = [probe_r2(hs[l, :, 2 * k - 1].numpy(), wh, 1e-3) for l in range(L + 1)]
    print(f"k={k} query tok  ", np.round(q, 2))
    print(f"k={k} example tok", np.round(e, 2))
