"""5. PPO: rollout + update iterations/s, toyrepro's `rlhf.ppo.PPOModule` vs TRL's PPOTrainer, on CPU.

Ours: `PPOModule` (policy + value head sharing one GPT, frozen SFT reference, reward = the
normalised reward model `RewardModel.score`, gold reward logged) under `lightning.Trainer` with
manual optimisation, iterations fed as in `rlhf.experiment.run_ppo`.

TRL: `trl.experimental.ppo.PPOTrainer` (moved out of `trl` in 1.10, *removed* from TRL in 1.13:
huggingface/trl#4482, #7020; the `bench` extra pins trl 1.12.0, the last release that has it). It
runs on the same tiny GPT-2 (`GPT.to_hf()`, same weights) with the same hyper-parameters: rollout
64 prompts (`per_device_train_batch_size=64`), 4 epochs x 2 minibatches of 32
(`num_ppo_epochs=4, num_mini_batches=2`), 16 sampled tokens at temperature 1 (no top-k/top-p, no
stop token), GAE gamma 1 / lambda 0.95, clip 0.2 / value clip 0.2, vf_coef 0.1, initial KL
coefficient 0.2, lr 3e-4. The reward model is `GPT2ForSequenceClassification(num_labels=1)` with
the same backbone weights. What TRL cannot be configured to do like ours (recorded, not
corrected): its value function is a *separate* network (`value_model`, a second GPT-2 backbone
with its own forward and backward: TRL has no shared-trunk value head), its KL coefficient is fixed
(ours adapts, a scalar update), and it logs metrics every iteration; ours also computes and logs the
hidden gold reward of every rollout (work TRL does not do).

Prompts come from the rlhf experiment's synthetic language (`make_language`), prepared once,
untimed. Timed: building the trainer + the whole `fit()` / `train()` call. fp32, one thread.

If the installed TRL has no PPOTrainer (trl >= 1.13), the baseline is a plain single-file PPO loop
(`plain_ppo`, below) on the same Hugging Face model with the same hyper-parameters, shared-trunk
value head like ours, HF `generate` for sampling, and the notes say so. Target >= 1.5.
"""

from __future__ import annotations

import copy
import gc
import os
import tempfile
import time
import unittest.mock

import lightning as L
import torch
import torch.nn.functional as F
from dpo_vs_trl import RLHF_MODEL, TINY_MODEL, alternate, quiet, quiet_lightning, tiny_tokenizer

from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.rlhf.config import LanguageConfig, PPOConfig
from toyrepro.rlhf.experiment import IterationSampler
from toyrepro.rlhf.language import make_language
from toyrepro.rlhf.policy import PolicyValue
from toyrepro.rlhf.ppo import PPOModule, gae, ppo_loss, whiten
from toyrepro.rlhf.reward_model import RewardModel

from harness import record

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def trl_ppo():
    """(PPOConfig, PPOTrainer) from the installed TRL, or None with the reason."""
    try:
        from trl.experimental.ppo import PPOConfig as TC
        from trl.experimental.ppo import PPOTrainer
    except ImportError as e:
        import trl

        return None, (f"trl {trl.__version__} has no PPOTrainer ({e}); TRL moved it to trl.experimental.ppo in "
                      "1.10 and removed it in 1.13 (huggingface/trl#7020)")
    return (TC, PPOTrainer), ""


def seq_classifier(sft: GPT, pad_token_id: int):
    from transformers import GPT2ForSequenceClassification

    hf = sft.to_hf()
    m = GPT2ForSequenceClassification(hf.config.__class__(**(hf.config.to_dict() | {"num_labels": 1})))
    m.transformer.load_state_dict(hf.transformer.state_dict())
    m.config.pad_token_id = pad_token_id  # never present (fixed lengths): the last token is scored
    return m


def plain_ppo(policy, rm, ref, prompts: torch.Tensor, pc: PPOConfig, completion_len: int, pad_id: int) -> None:
    """A minimal single-file PPO loop on Hugging Face models (the fallback baseline): HF `generate`,
    a shared-trunk value head, per-token KL penalty + score at the last token, GAE, whitened
    advantages, `ppo_epochs` x minibatches of clipped policy + value loss, grad clip, AdamW."""
    head = torch.nn.Linear(policy.config.n_embd, 1)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    params = list(policy.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=pc.lr, betas=(0.9, 0.95), weight_decay=0.0)
    P, n = prompts.size(1), pc.rollout_size

    def forward(model, seq):  # log-probs, values of the completion tokens
        out = model(seq[:, :-1], output_hidden_states=True)
        logp = F.log_softmax(out.logits[:, P - 1:].float(), -1).gather(-1, seq[:, P:, None]).squeeze(-1)
        return logp, out.hidden_states[-1][:, P - 1:]

    for it in range(prompts.size(0) // n):
        q = prompts[it * n:(it + 1) * n]
        with torch.no_grad():
            policy.eval()
            seq = policy.generate(q, attention_mask=torch.ones_like(q), max_new_tokens=completion_len, do_sample=True,
                                  top_k=0, top_p=1.0, temperature=1.0, pad_token_id=pad_id)
            logp, h = forward(policy, seq)
            values = head(h).squeeze(-1)
            ref_logp, _ = forward(ref, seq)
            score = rm(seq).logits[:, 0]
            rewards = -pc.init_kl_coef * (logp - ref_logp)
            rewards[:, -1] += score
            adv, returns = gae(rewards, values, pc.gamma, pc.lam)
            adv = whiten(adv)
        policy.train()
        for _ in range(pc.ppo_epochs):
            perm = torch.randperm(n)
            for mb in perm.split(pc.minibatch_size):
                new_logp, h = forward(policy, seq[mb])
                loss, _ = ppo_loss(new_logp, logp[mb], head(h).squeeze(-1), values[mb], adv[mb], returns[mb],
                                   pc.clip_range, pc.vf_clip_range, pc.vf_coef)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, pc.max_grad_norm)
                opt.step()


def sides(cfg: GPTConfig, iters: int, baseline: str, rollout: int = 64, keep_gc: bool = True):
    lang = make_language(LanguageConfig(), cfg.vocab_size, seed=0)
    completion_len = lang.completion_len
    pc = PPOConfig(iterations=iters, rollout_size=rollout, minibatch_size=rollout // 2, ppo_epochs=4, lr=3e-4,
                   eval_every=10**9)
    torch.manual_seed(0)
    sft = GPT(cfg).eval()
    rm = RewardModel(copy.deepcopy(sft)).eval().requires_grad_(False)
    prompts = lang.prompts(iters * pc.rollout_size, torch.Generator().manual_seed(1))  # untimed prep
    tok = tiny_tokenizer(cfg.vocab_size)

    def ours():
        module = PPOModule(PolicyValue(copy.deepcopy(sft).train()), copy.deepcopy(sft), lang.prompts, completion_len,
                           rm.score, lang.gold_reward, pc, seed=0, evaluate=None)
        steps = iters * module.steps_per_iteration
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                            limit_val_batches=0, num_sanity_val_steps=0)
        batches = torch.utils.data.DataLoader(list(range(iters)), batch_size=1,
                                              sampler=IterationSampler(iters, lambda: module.iteration))
        trainer.fit(module, batches)
        assert module.iteration == iters, module.iteration

    if baseline == "trl":
        from datasets import Dataset
        from transformers.trainer_callback import PrinterCallback

        (TC, PPOTrainer), _ = trl_ppo()
        ds = Dataset.from_dict({"input_ids": prompts.tolist()})
        args = TC(output_dir=tempfile.mkdtemp(prefix="bench_trl_ppo_"), per_device_train_batch_size=pc.rollout_size,
                  gradient_accumulation_steps=1, num_mini_batches=pc.rollout_size // pc.minibatch_size,
                  num_ppo_epochs=pc.ppo_epochs, total_episodes=iters * pc.rollout_size,
                  local_rollout_forward_batch_size=pc.rollout_size, response_length=completion_len,
                  temperature=1.0, stop_token_id=None, missing_eos_penalty=None, learning_rate=pc.lr,
                  kl_coef=pc.init_kl_coef, kl_estimator="k1", vf_coef=pc.vf_coef, cliprange=pc.clip_range,
                  cliprange_value=pc.vf_clip_range, gamma=pc.gamma, lam=pc.lam, whiten_rewards=False,
                  num_sample_generations=0, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0,
                  lr_scheduler_type="constant", save_strategy="no", eval_strategy="no", report_to="none",
                  disable_tqdm=True, use_cpu=True, bf16=False, gradient_checkpointing=False, seed=0)

        def theirs():
            policy, ref = sft.to_hf(), sft.to_hf()
            policy.generation_config.pad_token_id = tok.pad_token_id
            t = PPOTrainer(args=args, processing_class=tok, model=policy, ref_model=ref,
                           reward_model=seq_classifier(sft, tok.pad_token_id), train_dataset=ds,
                           value_model=seq_classifier(sft, tok.pad_token_id))
            t.remove_callback(PrinterCallback)  # it prints every iteration's metrics; ours prints nothing
            if keep_gc:
                t.train()
            else:  # TRL calls gc.collect() twice per iteration; its cost grows with the process's heap
                with unittest.mock.patch.object(gc, "collect", lambda *a, **k: 0):
                    t.train()
            assert t.state.global_step == iters, t.state.global_step
    else:
        def theirs():
            plain_ppo(sft.to_hf().train(), seq_classifier(sft, tok.pad_token_id).eval(), sft.to_hf().eval(),
                      prompts, pc, completion_len, tok.pad_token_id)

    return ours, theirs


def run(tiny: bool = False, baseline: str | None = None) -> dict:
    import trl

    quiet()
    found, why = trl_ppo()
    baseline = baseline or ("trl" if found else "plain")
    cfg = GPTConfig(**(TINY_MODEL if tiny else RLHF_MODEL))
    iters, rollout = (1, 8) if tiny else (4, 64)
    reps, warmup = (1, 0) if tiny else (3, 1)
    label = "TRL PPOTrainer" if baseline == "trl" else "plain PPO loop"
    with quiet_lightning():
        t_ours, t_theirs, raw_ours, raw_theirs = alternate(*sides(cfg, iters, baseline, rollout), reps, warmup)
        if baseline == "trl":  # the same, with TRL's per-iteration gc.collect() calls made no-ops
            t_ours2, t_nogc, raw_ours2, raw_nogc = alternate(*sides(cfg, iters, baseline, rollout, keep_gc=False),
                                                             reps, warmup)
    figures = {"trl_version": trl.__version__, "baseline": label, "model": vars(cfg), "threads": 1,
               "iterations_per_run": iters, "rollout": rollout, "ppo_epochs": 4, "minibatches": 2,
               "ours_iterations_per_s": iters / t_ours, "baseline_iterations_per_s": iters / t_theirs,
               "ours_s_per_run": raw_ours, "baseline_s_per_run": raw_theirs}
    ratios = {f"ours/{label} iterations/s": {"value": t_theirs / t_ours, "target": 1.5}}
    if baseline == "trl":
        t0 = time.perf_counter()
        gc.collect()
        figures |= {"gc_collect_s_in_this_process": time.perf_counter() - t0,
                    "ours_iterations_per_s_2": iters / t_ours2, "trl_no_gc_iterations_per_s": iters / t_nogc,
                    "ours_s_per_run_2": raw_ours2, "trl_no_gc_s_per_run": raw_nogc}
        ratios["ours/TRL PPOTrainer iterations/s, TRL's gc.collect() disabled"] = {"value": t_nogc / t_ours2,
                                                                                  "target": 1.5}
    figures["load_average"] = os.getloadavg()
    notes = ("Timed: trainer construction + whole fit()/train() of N rollout+update iterations, median of "
             "alternating runs after a warm-up run, 1 thread, fp32; prompts prepared once, untimed. "
             + ("TRL PPOTrainer (trl.experimental.ppo) differs by design: a separate value network (second "
                "backbone forward+backward per minibatch; TRL has no shared-trunk value head), a fixed KL "
                "coefficient, metrics logged every iteration, and two gc.collect() calls per iteration whose "
                "cost grows with everything the process holds (here also Lightning and toyrepro), hence the "
                "second ratio with them disabled; ours also scores the hidden gold reward."
                if baseline == "trl" else
                f"No TRL PPO: {why or 'plain loop requested'}. Baseline: a plain single-file PPO loop on the same "
                "HF GPT-2 (HF generate, shared-trunk value head, same hyper-parameters)."))
    return record("ppo_vs_trl", figures, ratios, notes)


if __name__ == "__main__":
    print(run())
