"""Time one training step (plain loop, no Lightning): python experiments/icl/dev/step_time.py THREADS BATCH LAYERS WIDTH."""
import time, sys, torch
from toyrepro.core.transformer import GPTConfig
from toyrepro.icl.model import ICLTransformer, prompt_mse
from toyrepro.icl.tasks import PromptBatches
torch.set_num_threads(int(sys.argv[1]))
bs=int(sys.argv[2]); L=int(sys.argv[3]); C=int(sys.argv[4])
m=ICLTransformer(GPTConfig(vocab_size=1,block_size=32,n_layer=L,n_head=4,n_embd=C),5)
opt=torch.optim.AdamW(m.parameters(),lr=1e-3)
data=PromptBatches(1000,bs,5,11,0)
t0=time.process_time(); w0=time.time()
for i in range(50): b=data[i]
tg=(time.process_time()-t0)/50
t0=time.process_time(); w0=time.time()
for i in range(100):
    b=data[i]
    loss=prompt_mse(m(b["tokens"]),b["ys"]); opt.zero_grad(); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step()
print(f"thr {sys.argv[1]} bs {bs} L{L} C{C}: data {tg*1e3:.2f} ms, step cpu {(time.process_time()-t0)*10:.1f} ms wall {(time.time()-w0)*10:.1f} ms")
