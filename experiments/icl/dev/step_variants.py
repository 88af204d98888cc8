"""icl development timing (no Lightning): one training step of the ICL GPT (2 heads), eager, erf-GELU or compiled.
Usage: python experiments/icl/dev/step_variants.py THREADS eager|erf|compile [BATCH] [LAYERS]"""
import time, sys, torch, math
import torch.nn.functional as F
from toyrepro.core import transformer as T
from toyrepro.core.transformer import GPTConfig
from toyrepro.icl.model import ICLTransformer, prompt_mse
from toyrepro.icl.tasks import PromptBatches
torch.set_num_threads(int(sys.argv[1])); var=sys.argv[2]
if var=="erf":
    T.MLP.forward=lambda self,x: self.drop(self.c_proj(F.gelu(self.c_fc(x))))
m=ICLTransformer(GPTConfig(vocab_size=1,block_size=32,n_layer=int(sys.argv[4]) if len(sys.argv)>4 else 4,n_head=2,n_embd=64),5)
opt=torch.optim.AdamW(m.parameters(),lr=1e-3)
data=PromptBatches(1000,int(sys.argv[3]) if len(sys.argv)>3 else 64,5,11,0)
f = torch.compile(m) if var=="compile" else m
def step(i):
    b=data[i]
    loss=prompt_mse(f(b["tokens"]),b["ys"]); opt.zero_grad(); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(),1.0); opt.step()
t0=time.time()
for i in range(20): step(i)
print("warm", time.time()-t0)
t0=time.process_time(); w0=time.time()
for i in range(200): step(i)
print(f"{var}: step cpu {(time.process_time()-t0)*5:.1f} ms wall {(time.time()-w0)*5:.1f} ms")
