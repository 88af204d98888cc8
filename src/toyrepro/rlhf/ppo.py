"""PPO with a KL penalty to the SFT reference (Ziegler et al. 2019; InstructGPT §3.5).

    ratio_t  = pi(y_t) / pi_old(y_t)
    L_pg     = mean_t max(-A_t * ratio_t, -A_t * clip(ratio_t, 1-eps, 1+eps))   (Schulman et al. 2017, eq. 7)
    L_vf     = mean_t 0.5 * max((V_t - R_t)^2, (clip(V_t, V_old_t +- eps_v) - R_t)^2)
    loss     = L_pg + vf_coef * L_vf

Per-token reward (Ziegler et al. 2019 eq. 2, spread over tokens as in trl):
r_t = -beta * (log pi_old(y_t) - log pi_ref(y_t)), plus the reward-model score at the last
token. Advantages by GAE (gamma=1, lambda=0.95), whitened per rollout.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import lightning as L
import torch

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw, check_finite
from toyrepro.core.transformer import GPT
from toyrepro.rlhf.config import PPOConfig
from toyrepro.rlhf.kl_controller import make_controller
from toyrepro.rlhf.policy import PolicyValue, completion_logprobs, sample_completions


def ppo_loss(logp, old_logp, values, old_values, advantages, returns, clip_range: float,
             vf_clip_range: float, vf_coef: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective; all inputs (B, L). Returns (loss, stats)."""
    ratio = torch.exp(logp - old_logp)
    pg_losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    v_clipped = old_values + (values - old_values).clamp(-vf_clip_range, vf_clip_range)
    vf_losses = 0.5 * torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    pg_loss, vf_loss = pg_losses.mean(), vf_losses.mean()
    with torch.no_grad():
        stats = {
            "policy_loss": pg_loss, "value_loss": vf_loss, "ratio": ratio.mean(),
            "clipfrac": ((ratio - 1).abs() > clip_range).float().mean(),
            "approx_kl": 0.5 * ((logp - old_logp) ** 2).mean(),  # KL(pi_old || pi), 2nd order
        }
    return pg_loss + vf_coef * vf_loss, stats


def per_token_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """r_t = -beta * (log pi - log pi_ref) at every token, + score (B,) at the last one."""
    rewards = -beta * (logp - ref_logp)
    rewards[:, -1] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16); the episode ends after
    the last token (V = 0 there). Returns (advantages, returns = advantages + values)."""
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv, adv + values


def whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + eps)


def kl_estimators(logp: torch.Tensor, ref_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence KL(pi || pi_ref) from samples of pi (Schulman 2020, "Approximating KL"):
    k1 = sum_t log(pi/ref) (unbiased, can be negative), k3 = sum_t (ref/pi - 1) - log(ref/pi)
    (unbiased, always >= 0, lower variance)."""
    log_r = ref_logp - logp
    return -log_r.sum(-1), (log_r.exp() - 1 - log_r).sum(-1)


class PPOModule(L.LightningModule):
    """One `training_step` = one PPO iteration: rollout, GAE, `ppo_epochs` passes of minibatch
    updates (manual optimisation), KL-controller update. The batch is just the iteration index.

    `reward_fn(prompts, completions) -> (B,)` is the proxy (normalised reward model) or the
    normalised gold reward; `gold_fn` the hidden gold reward, only logged. `evaluate(gpt)`
    returns {gold, proxy, kl} on held-out prompts and is called every `eval_every` iterations.
    """

    def __init__(self, policy: PolicyValue, ref: GPT, prompt_fn: Callable[[int, torch.Generator], torch.Tensor],
                 completion_len: int, reward_fn: Callable, gold_fn: Callable, cfg: PPOConfig, seed: int,
                 evaluate: Callable[[GPT], dict[str, float]] | None = None, stage: str = "ppo"):
        super().__init__()
        self.automatic_optimization = False
        self.policy, self.ref = policy, ref.requires_grad_(False).eval()
        self.prompt_fn, self.completion_len = prompt_fn, completion_len
        self.reward_fn, self.gold_fn, self.cfg, self.seed = reward_fn, gold_fn, cfg, seed
        self.evaluate_fn, self.stage = evaluate, stage
        self.kl_ctl = make_controller(cfg.kl_controller, cfg.init_kl_coef, cfg.target_kl, cfg.horizon)
        self.iteration = 0
        self.trajectory: list[dict[str, float]] = []  # evaluations: iteration, kl, gold, proxy, beta

    @property
    def steps_per_iteration(self) -> int:
        return self.cfg.ppo_epochs * math.ceil(self.cfg.rollout_size / self.cfg.minibatch_size)

    @torch.no_grad()
    def rollout(self, g: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.cfg
        prompts = self.prompt_fn(c.rollout_size, g).to(self.device)
        self.policy.eval()
        self.ref.eval()  # Lightning's train() at fit start reaches the frozen reference too
        completions = sample_completions(self.policy.gpt, prompts, self.completion_len, g).to(self.device)
        logp, entropy, values = self.policy(prompts, completions)
        ref_logp = completion_logprobs(self.ref, prompts, completions)
        score = self.reward_fn(prompts, completions).to(self.device).float()
        rewards = per_token_rewards(score, logp, ref_logp, self.kl_ctl.value)
        adv, returns = gae(rewards, values, c.gamma, c.lam)
        k1, k3 = kl_estimators(logp, ref_logp)
        self.policy.train()
        return {"prompts": prompts, "completions": completions, "logp": logp, "values": values,
                "advantages": whiten(adv), "returns": returns, "score": score, "k1": k1, "k3": k3,
                "entropy": entropy.sum(-1), "gold": self.gold_fn(prompts, completions).float()}

    def training_step(self, batch, batch_idx):
        c = self.cfg
        if self.evaluate_fn and self.iteration % c.eval_every == 0:
            self._evaluate()
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.iteration)
        ro = self.rollout(g)
        opt, sched = self.optimizers(), self.lr_schedulers()
        order = random.Random(self.seed * 7919 + self.iteration)
        stats: list[dict[str, torch.Tensor]] = []
        for _ in range(c.ppo_epochs):
            perm = list(range(c.rollout_size))
            order.shuffle(perm)
            for i in range(0, c.rollout_size, c.minibatch_size):
                if self._trainer is not None and self.global_step >= self.trainer.max_steps:
                    break  # trainer.step_cap (core.train.cap_steps) can end the stage mid-iteration
                mb = torch.tensor(perm[i : i + c.minibatch_size], device=self.device)
                logp, _, values = self.policy(ro["prompts"][mb], ro["completions"][mb])
                loss, st = ppo_loss(logp, ro["logp"][mb], values, ro["values"][mb], ro["advantages"][mb],
                                    ro["returns"][mb], c.clip_range, c.vf_clip_range, c.vf_coef)
                check_finite(loss, self.stage, self.global_step)
                opt.zero_grad()
                self.manual_backward(loss)
                self.clip_gradients(opt, gradient_clip_val=c.max_grad_norm, gradient_clip_algorithm="norm")
                opt.step()
                sched.step()
                stats.append(st | {"loss": loss.detach()})
        kl = float(ro["k1"].mean())
        beta = self.kl_ctl.value
        self.kl_ctl.update(kl, c.rollout_size)
        self.iteration += 1
        logs = {k: torch.stack([s[k] for s in stats]).mean() for k in stats[0]}
        logs |= {"kl_k1": ro["k1"].mean(), "kl_k3": ro["k3"].mean(), "entropy": ro["entropy"].mean(),
                 "proxy_reward": ro["score"].mean(), "gold_reward": ro["gold"].mean(),
                 "beta": torch.tensor(beta), "iteration": torch.tensor(float(self.iteration))}
        self.log_dict({f"{self.stage}/{k}": v for k, v in logs.items()}, batch_size=c.rollout_size)
        if self.evaluate_fn and self.iteration == c.iterations:
            self._evaluate()

    def _evaluate(self) -> None:
        res = self.evaluate_fn(self.policy.gpt) | {"iteration": self.iteration, "beta": self.kl_ctl.value}
        self.trajectory.append(res)
        self.log_dict({f"{self.stage}/eval_{k}": float(v) for k, v in res.items()})

    def configure_optimizers(self):
        steps = self.cfg.iterations * self.steps_per_iteration
        return adamw(self.policy, OptimConfig(lr=self.cfg.lr, weight_decay=0.0, warmup_steps=0,
                                              min_lr_ratio=1.0), steps)

    # the controller's beta, the iteration and the trajectory survive a resume
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ppo_state"] = {"iteration": self.iteration, "beta": self.kl_ctl.value,
                                   "trajectory": self.trajectory}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        s = checkpoint["ppo_state"]
        self.iteration, self.kl_ctl.value, self.trajectory = s["iteration"], s["beta"], s["trajectory"]
