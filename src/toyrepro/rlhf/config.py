"""Config section `rlhf:` of the rlhf experiment (configs/experiment/rlhf.yaml).

One sub-section per stage of the pipeline (SFT -> preferences -> reward model -> PPO ->
DPO -> best-of-n); SFT itself is driven by the top-level `optim:` and `trainer:` sections
(`trainer.max_steps` = SFT steps). Every field says what it is and where its default comes from; where a
toy-scale value differs from the paper's, the comment says so. The policy, reference and
reward-model backbones all use the top-level `model:` section (`model.vocab_size` is the
language's vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class LanguageConfig:
    """The synthetic language and its hidden gold reward (rlhf/language.py)."""

    branching: int = 6  # successors each token may be followed by (a sparse Markov chain)
    sentiment_fraction: float = 0.25  # fraction of tokens that are positive (as many are negative)
    fluency_penalty: float = 2.0  # gold-reward cost of each transition the language never makes
    repeat_decay: float = 0.5  # k-th repeat of a token counts repeat_decay^(k-1) in the gold sentiment (1 = plain count)
    prompt_len: int = 4  # prompt tokens (DPO §6.1 uses IMDb prefixes of 2-8 tokens)
    completion_len: int = 16  # sampled tokens scored by the rewards
    sft_sequences: int = 20000  # chain samples the SFT model is trained on (steps: trainer.max_steps)

    def validate(self, p: str) -> None:
        check(self.branching >= 2, f"{p}.branching", ">= 2", self.branching)
        check(0 < self.sentiment_fraction <= 0.5, f"{p}.sentiment_fraction", "in (0, 0.5]", self.sentiment_fraction)
        check(self.fluency_penalty >= 0, f"{p}.fluency_penalty", ">= 0", self.fluency_penalty)
        check(0 < self.repeat_decay <= 1, f"{p}.repeat_decay", "in (0, 1]", self.repeat_decay)
        check(self.prompt_len >= 1, f"{p}.prompt_len", ">= 1", self.prompt_len)
        check(self.completion_len >= 1, f"{p}.completion_len", ">= 1", self.completion_len)
        check(self.sft_sequences >= 2, f"{p}.sft_sequences", ">= 2", self.sft_sequences)


@dataclass
class PreferenceConfig:
    """Preference pairs as in DPO App. C.1 (rlhf/preferences.py)."""

    n_prompts: int = 2000  # prompts; each gets `samples_per_prompt` SFT completions
    samples_per_prompt: int = 4  # DPO App. C.1 samples 4 per prompt and labels all 6 pairs
    deterministic: bool = False  # label by the higher gold reward instead of a Bradley-Terry draw
    bt_temperature: float = 1.0  # P(a > b) = sigmoid((r_a - r_b) / temperature), Bradley & Terry 1952
    val_fraction: float = 0.1  # held-out prompts (their pairs score the reward model)

    def validate(self, p: str) -> None:
        check(self.n_prompts >= 10, f"{p}.n_prompts", ">= 10", self.n_prompts)
        check(self.samples_per_prompt >= 2, f"{p}.samples_per_prompt", ">= 2", self.samples_per_prompt)
        check(self.bt_temperature > 0, f"{p}.bt_temperature", "> 0", self.bt_temperature)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)


@dataclass
class RewardModelConfig:
    """GPT backbone + scalar head, Bradley-Terry loss (InstructGPT §3.5; rlhf/reward_model.py)."""

    steps: int = 400  # optimiser steps (InstructGPT trains one epoch)
    batch_size: int = 64  # pairs per step
    lr: float = 1e-3  # toy scale; InstructGPT used 9e-6 on 6B
    n_layer: int = 0  # backbone depth; 0 = same as `model.n_layer` (smaller = a weaker proxy, Gao et al.)
    init_from_sft: bool = True  # start from the SFT weights (InstructGPT §3.5)

    def validate(self, p: str) -> None:
        check(self.steps >= 1, f"{p}.steps", ">= 1", self.steps)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)
        check(self.lr > 0, f"{p}.lr", "> 0", self.lr)
        check(self.n_layer >= 0, f"{p}.n_layer", ">= 0", self.n_layer)


@dataclass
class PPOConfig:
    """PPO with a KL penalty (Ziegler et al. 2019; Ouyang et al. 2022; rlhf/ppo.py)."""

    reward: str = "proxy"  # "proxy" = the reward model, "gold" = the hidden reward itself (Gao et al. baseline)
    iterations: int = 120  # rollout + update rounds
    rollout_size: int = 64  # prompts sampled per iteration
    minibatch_size: int = 32  # sequences per gradient step
    ppo_epochs: int = 4  # passes over each rollout (Schulman et al. 2017)
    lr: float = 3e-4  # toy scale
    clip_range: float = 0.2  # policy ratio clip epsilon (Schulman et al. 2017, eq. 7)
    vf_clip_range: float = 0.2  # value clip (as in OpenAI baselines / trl)
    vf_coef: float = 0.1  # value-loss weight (trl default)
    gamma: float = 1.0  # discount (Ziegler et al. 2019)
    lam: float = 0.95  # GAE lambda (Schulman et al. 2016; Ziegler et al. 2019)
    kl_controller: str = "adaptive"  # "adaptive" (Ziegler et al. 2019 §2.2) or "fixed"
    init_kl_coef: float = 0.2  # beta at the start (trl default; fixed beta when kl_controller=fixed)
    target_kl: float = 6.0  # sequence KL (nats) the adaptive controller aims at (Ziegler et al. 2019)
    horizon: int = 2000  # controller horizon in samples; paper 10000, shorter for a 120-iteration run
    max_grad_norm: float = 1.0  # gradient clipping
    eval_every: int = 10  # iterations between evaluations (gold/proxy/KL trajectory)

    def validate(self, p: str) -> None:
        check(self.reward in ("proxy", "gold"), f"{p}.reward", "'proxy' or 'gold'", self.reward)
        check(self.kl_controller in ("adaptive", "fixed"), f"{p}.kl_controller", "'adaptive' or 'fixed'",
              self.kl_controller)
        for k in ("iterations", "rollout_size", "minibatch_size", "ppo_epochs", "horizon", "eval_every"):
            check(getattr(self, k) >= 1, f"{p}.{k}", ">= 1", getattr(self, k))
        check(self.minibatch_size <= self.rollout_size, f"{p}.minibatch_size",
              f"<= {p}.rollout_size={self.rollout_size}", self.minibatch_size)
        check(self.lr > 0, f"{p}.lr", "> 0", self.lr)
        check(self.clip_range > 0, f"{p}.clip_range", "> 0", self.clip_range)
        check(self.vf_clip_range > 0, f"{p}.vf_clip_range", "> 0", self.vf_clip_range)
        check(self.vf_coef >= 0, f"{p}.vf_coef", ">= 0", self.vf_coef)
        check(0 < self.gamma <= 1, f"{p}.gamma", "in (0, 1]", self.gamma)
        check(0 <= self.lam <= 1, f"{p}.lam", "in [0, 1]", self.lam)
        check(self.init_kl_coef >= 0, f"{p}.init_kl_coef", ">= 0", self.init_kl_coef)
        check(self.target_kl > 0, f"{p}.target_kl", "> 0", self.target_kl)
        check(self.max_grad_norm > 0, f"{p}.max_grad_norm", "> 0", self.max_grad_norm)


@dataclass
class DPOConfig:
    """Direct Preference Optimization (Rafailov et al. 2023, eq. 7; rlhf/dpo.py)."""

    beta: float = 0.1  # KL strength (DPO §6.1 sweeps 0.05-5; 0.1 is its default)
    steps: int = 300  # optimiser steps
    batch_size: int = 64  # pairs per step
    lr: float = 3e-4  # toy scale; the paper uses 1e-6 with RMSprop on GPT-2 large
    eval_every: int = 50  # steps between gold/KL evaluations (frontier points)

    def validate(self, p: str) -> None:
        check(self.beta > 0, f"{p}.beta", "> 0", self.beta)
        check(self.steps >= 1, f"{p}.steps", ">= 1", self.steps)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)
        check(self.lr > 0, f"{p}.lr", "> 0", self.lr)
        check(self.eval_every >= 1, f"{p}.eval_every", ">= 1", self.eval_every)


@dataclass
class BestOfNConfig:
    """Best-of-n sampling against the proxy (Gao et al. 2022 §2; rlhf/best_of_n.py)."""

    max_n: int = 1024  # largest n (a power of 2); KL(best-of-1024) = 5.93 nats, PPO's target range
    n_prompts: int = 32  # prompts
    samples_per_prompt: int = 4096  # N SFT samples per prompt (>= max_n; 0 = max_n); Gao et al. App. I's
    # unbiased estimator averages best-of-n over all n-subsets of the N, so N >> n lowers its variance

    def validate(self, p: str) -> None:
        check(self.max_n >= 8 and (self.max_n & (self.max_n - 1)) == 0, f"{p}.max_n", "a power of 2 >= 8",
              self.max_n)
        check(self.n_prompts >= 1, f"{p}.n_prompts", ">= 1", self.n_prompts)
        check(self.samples_per_prompt == 0 or self.samples_per_prompt >= self.max_n, f"{p}.samples_per_prompt",
              f"0 or >= max_n ({self.max_n})", self.samples_per_prompt)

    @property
    def n_samples(self) -> int:
        return self.samples_per_prompt or self.max_n


@dataclass
class RLHFConfig:
    language: LanguageConfig = field(default_factory=LanguageConfig)
    preferences: PreferenceConfig = field(default_factory=PreferenceConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    eval_prompts: int = 256  # held-out prompts on which every policy's gold/proxy reward and KL are measured
    cpu_threads: int = 1  # torch intra-op threads on CPU; tiny models are fastest (and share a machine best) on 1

    def validate(self, p: str) -> None:
        for name in ("language", "preferences", "reward_model", "ppo", "dpo", "best_of_n"):
            getattr(self, name).validate(f"{p}.{name}")
        check(self.eval_prompts >= 2, f"{p}.eval_prompts", ">= 2", self.eval_prompts)
        check(self.cpu_threads >= 1, f"{p}.cpu_threads", ">= 1", self.cpu_threads)
