"""The plain training loop the icl dev scripts share (the Lightning stage's step: MSE over every query,
clipping 1, AdamW + warm-up-cosine); `report(step)` runs every `every` steps and after the last."""
import torch
from toyrepro.icl.model import prompt_mse


def train(model, opt, sched, data, steps, every, report, loss_fn=prompt_mse):
    for s in range(steps):
        b = data[s]
        loss = loss_fn(model(b["tokens"]), b["ys"]); opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
        if (s + 1) % every == 0 or s + 1 == steps:
            report(s + 1)
