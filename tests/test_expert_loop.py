"""expert_loop: labels are counted exactly against the budget, the round loop learns from
labels only (never the gold reward), and active selection asks the smallest-margin pairs."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from toyrepro import cli  # noqa: F401  (registers the schema)
from toyrepro.core import config as schema
from toyrepro.core.checks import ConfigError
from toyrepro.core.config import OptimConfig
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.expert_loop import loop
from toyrepro.expert_loop.active import implicit_margin, implicit_margins, smallest_margin
from toyrepro.expert_loop.experiment import matched_gain
from toyrepro.expert_loop.labellers import Labeller, SelfLabeller
from toyrepro.expert_loop.learner import DPOLearner
from toyrepro.expert_loop.loop import run_rounds, run_static, sample_questions
from toyrepro.rlhf.config import LanguageConfig
from toyrepro.rlhf.language import Language, make_language

from conftest import REPO

torch.set_num_threads(1)
V, P, L = 8, 2, 4
OPTIM = OptimConfig(lr=3e-3, batch_size=4, warmup_steps=0)


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=1, n_head=2, n_embd=16))


@pytest.fixture
def lang() -> Language:
    return make_language(LanguageConfig(branching=3, prompt_len=P, completion_len=L), V, seed=0)


def fixed_logits(model: GPT, logits: list[float]) -> GPT:
    """Make `model` emit the same next-token logits everywhere: zero ln_f's gain and set its
    bias v so that the (tied) lm_head maps it to `logits` (W v = logits, W is V x C, C > V)."""
    with torch.no_grad():
        w = model.lm_head.weight
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(torch.linalg.pinv(w) @ torch.tensor(logits))
    return model


def learner(ref: GPT, epochs: int = 1, total: int = 100, seed: int = 0) -> DPOLearner:
    import copy
    return DPOLearner(copy.deepcopy(ref), ref, 0.5, OPTIM, epochs, total, seed)


# -- labels counted exactly against B ------------------------------------------------------


@pytest.mark.parametrize("pool_factor", [0, 3])
def test_every_question_asked_is_one_label_and_the_total_is_the_budget(lang, pool_factor):
    ref = tiny_gpt()
    expert = Labeller(lang, temperature=1.0, deterministic=False, seed=1)
    traj = run_rounds(learner(ref), expert, lang.prompts, L, budget=12, rounds=3, seed=2, pool_factor=pool_factor)
    assert expert.asked == 12
    assert [p["labels"] for p in traj] == [4, 8, 12]  # B/R questions per round
    assert all(p["pairs"] <= p["labels"] for p in traj)  # a tie is a spent label with no pair


def test_static_arm_spends_exactly_b_labels_and_refuses_a_budget_beyond_its_data():
    ref = tiny_gpt()
    data = tuple(torch.randint(0, V, (10, n)) for n in (P, L, L))
    assert run_static(learner(ref), data, budget=6)[-1]["labels"] == 6
    with pytest.raises(ValueError) as e:
        run_static(learner(ref), data, budget=11)
    assert str(e.value) == ("static arm: budget 11 exceeds the 10 labelled SFT pairs available; raise "
                            "rlhf.preferences.n_prompts or lower expert_loop.budgets")


def test_a_budget_that_rounds_do_not_divide_is_refused(lang):
    with pytest.raises(ValueError) as e:
        run_rounds(learner(tiny_gpt()), Labeller(lang, 1.0, False, 0), lang.prompts, L, budget=10, rounds=3, seed=0)
    assert str(e.value) == ("budget 10 is not a multiple of rounds=3; each round asks budget/rounds questions, "
                            "so pick a budget divisible by the rounds")


def test_self_rewarding_spends_no_expert_label(lang, monkeypatch):
    def no_gold(*a, **k):
        raise AssertionError("the self-rewarding control consulted the gold reward")

    monkeypatch.setattr(Language, "gold_reward", no_gold)
    ref = tiny_gpt()
    judge = SelfLabeller(ref, 0.5, seed=0)
    traj = run_rounds(learner(ref), judge, lang.prompts, L, budget=8, rounds=2, seed=0, spends_labels=False)
    assert [p["labels"] for p in traj] == [0, 0] and [p["pairs"] for p in traj] == [4, 8]
    assert judge.asked == 0 and judge.judged == 8


def test_a_policy_that_only_repeats_itself_still_gets_exactly_n_questions(lang):
    ref = fixed_logits(tiny_gpt(), [0.0, 0.0, 0.0, 60.0, 0.0, 0.0, 0.0, 0.0])  # always emits token 3
    p, a, b = sample_questions(ref, lang.prompts, 5, L, torch.Generator().manual_seed(0))
    assert p.size(0) == a.size(0) == b.size(0) == 5
    assert torch.equal(a, b) and bool((a == 3).all())  # asked as they are, after MAX_RESAMPLES tries


# -- the policy never sees the gold reward ---------------------------------------------------


def test_the_round_loop_learns_from_labels_alone(lang, monkeypatch):
    """Run 1 asks the expert and records its answers. Run 2 replays those answers with the gold
    reward made unreachable (any call raises): it asks the same questions and ends with the
    same weights, so nothing in the loop but the answers depends on the gold reward."""
    ref = tiny_gpt()
    expert = Labeller(lang, 1.0, False, seed=1)
    record = []

    def ask(prompts, a, b):
        answer = expert(prompts, a, b)
        assert len(answer) == 3  # prompt, chosen, rejected: no gold values, no agreement probabilities
        record.append(((prompts, a, b), answer))
        return answer

    first = learner(ref, epochs=2)
    run_rounds(first, ask, lang.prompts, L, budget=12, rounds=3, seed=5, pool_factor=2)

    def no_gold(*args, **kwargs):
        raise AssertionError("the round loop read the gold reward")

    monkeypatch.setattr(Language, "gold_reward", no_gold)
    replay = iter(record)

    def replayed(prompts, a, b):
        question, answer = next(replay)
        assert all(torch.equal(x, y) for x, y in zip(question, (prompts, a, b))), "a different question"
        return answer

    second = learner(ref, epochs=2)
    run_rounds(second, replayed, lang.prompts, L, budget=12, rounds=3, seed=5, pool_factor=2)
    for (k, v), w in zip(first.policy.state_dict().items(), second.policy.state_dict().values()):
        assert torch.equal(v, w), k
    assert not torch.equal(first.policy.lm_head.weight, ref.lm_head.weight)  # it did learn


# -- active selection -----------------------------------------------------------------------


def test_implicit_margin_and_smallest_margin_on_a_hand_example():
    # log pi - log ref: a = [0.4, 0.1, -1.0, 0.0], b = [-0.4, 0.3, 1.0, 0.05]
    pi_a, ref_a = torch.tensor([-3.6, -4.9, -6.0, -2.0]), torch.tensor([-4.0, -5.0, -5.0, -2.0])
    pi_b, ref_b = torch.tensor([-4.4, -4.7, -2.0, -2.95]), torch.tensor([-4.0, -5.0, -3.0, -3.0])
    m = implicit_margin(pi_a, pi_b, ref_a, ref_b, beta=0.5)
    assert torch.allclose(m, torch.tensor([0.4, -0.1, -1.0, -0.025]))
    assert smallest_margin(m, 1).tolist() == [3]
    assert smallest_margin(m, 2).tolist() == [1, 3]
    with pytest.raises(ValueError) as e:
        smallest_margin(m, 5)
    assert str(e.value) == "cannot pick 5 of 4 candidate pairs; pick between 1 and the pool size"


def test_the_active_arm_asks_the_smallest_margin_pairs_of_its_pool(lang, monkeypatch):
    """A hand pool of 6 candidates (prompt i = [i, i]) with hand margins: the 2 asked per round
    are the two smallest |margin|, candidates 4 and 1."""
    pool = (torch.arange(6).repeat_interleave(P).view(6, P), torch.zeros(6, L, dtype=torch.long),
            torch.ones(6, L, dtype=torch.long))
    monkeypatch.setattr(loop, "sample_questions", lambda policy, prompts, n, length, g: pool)
    monkeypatch.setattr(loop, "implicit_margins", lambda *a: torch.tensor([0.9, -0.05, 0.3, -0.6, 0.01, 2.0]))
    asked = []

    def ask(prompts, a, b):
        asked.append(prompts[:, 0].tolist())
        return prompts, a, b

    run_rounds(learner(tiny_gpt()), ask, lang.prompts, L, budget=4, rounds=2, seed=0, pool_factor=3)
    assert asked == [[1, 4], [1, 4]]


def test_self_labeller_flips_a_coin_on_ties_and_follows_its_implicit_reward(lang):
    ref = tiny_gpt()
    p = lang.prompts(64, torch.Generator().manual_seed(0))
    a, b = torch.zeros(64, L, dtype=torch.long), torch.ones(64, L, dtype=torch.long)
    judge = SelfLabeller(ref, 0.5, seed=0)
    judge.policy = ref  # the first round: policy = reference, every margin is 0
    _, chosen, _ = judge(p, a, b)
    assert 10 < int((chosen[:, 0] == 0).sum()) < 54
    policy = fixed_logits(tiny_gpt(), [5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # prefers token 0 to token 1
    judge.policy = policy
    assert bool((implicit_margins(policy, ref, p, a, b, 0.5) > 0).all())
    _, chosen, rejected = judge(p, a, b)
    assert torch.equal(chosen, a) and torch.equal(rejected, b)


# -- DPO across rounds, the matched-KL read-out, config checks -------------------------------


def test_dpo_learner_raises_the_chosen_margin_with_the_stated_number_of_steps():
    ref = tiny_gpt()
    g = torch.Generator().manual_seed(0)
    p, c, r = torch.randint(0, V, (10, P), generator=g), torch.randint(0, V, (10, L), generator=g), \
        torch.randint(0, V, (10, L), generator=g)
    lr = learner(ref, epochs=3)
    before = implicit_margins(lr.policy, ref, p, c, r, 0.5)
    lr.update(p, c, r)
    assert lr.steps == DPOLearner.steps_for(10, 3, 4) == 9
    assert float(implicit_margins(lr.policy, ref, p, c, r, 0.5).mean()) > float(before.mean()) + 0.05


def test_matched_gain_reads_online_at_statics_kl():
    traj = [{"round": 0, "kl": 0.0, "gain": 0.0}, {"round": 1, "kl": 2.0, "gain": 1.0},
            {"round": 2, "kl": 6.0, "gain": 3.0}]
    assert matched_gain(traj, 4.0)[0] == pytest.approx(2.0)  # halfway between rounds 1 and 2
    assert matched_gain(traj, 8.0)[0] == 3.0  # ends below static's KL: its final gain
    assert math.isclose(matched_gain(traj, 0.5)[0], 0.25)


@pytest.mark.parametrize("override, message", [
    ("expert_loop.budgets=[100,200]", "expert_loop.budgets must be multiples of expert_loop.rounds=3 (each round "
                                      "asks B/R questions) (got [100, 200])"),
    ("expert_loop.crowd_temperature=0.5", "expert_loop.crowd_temperature must be > rlhf.preferences.bt_temperature"
                                          "=1.0 (the crowd is noisier) (got 0.5)"),
    ("expert_loop.pool_factor=1", "expert_loop.pool_factor must be >= 2 (active selection needs a choice) (got 1)"),
])
def test_bad_config_is_refused_with_one_line(override, message):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=expert_loop", "scale=quick", "expert_loop.rounds=3", override]
                      if "budgets" in override else ["experiment=expert_loop", "scale=quick", override])
    cfg.run_dir = "/tmp/x"
    with pytest.raises(ConfigError) as e:
        schema.validate(cfg)
    assert str(e.value) == message
