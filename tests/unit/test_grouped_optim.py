"""`GroupedAdamW` in one process: inactive groups untouched (bit-identical), per-group clipping equals
``clip_grad_norm_`` per network, all groups active equals plain AdamW (+ the config errors of the builder)."""

from __future__ import annotations

import copy

import pytest
import torch

from streamvid.core.config import ConfigError
from streamvid.distill.grouped_optim import GroupedAdamW, build_grouped_adamw, find_grouped_optimizer

GEN = dict(lr=1e-2, betas=(0.0, 0.999), weight_decay=0.01, max_grad_norm=0.05)
CRITIC = dict(lr=3e-3, betas=(0.5, 0.99), weight_decay=0.1, max_grad_norm=0.0)


def nets(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))  # noqa: E731
    return make(), make()


def backward(gen: torch.nn.Module, critic: torch.nn.Module, step: int) -> None:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(6, 4, generator=g)
    (gen(x).square().mean() * 3 + critic(x).sin().sum()).backward()


def clone_state(opt: torch.optim.Optimizer) -> dict:
    return copy.deepcopy(opt.state_dict()["state"])


def test_inactive_group_is_bit_identical():
    gen, critic = nets()
    opt = build_grouped_adamw(gen, critic, GEN, CRITIC)
    backward(gen, critic, 0)
    opt.step()
    opt.zero_grad()
    params = [p.detach().clone() for p in gen.parameters()]
    state = {i: clone_state(opt)[i] for i in range(len(params))}  # generator params come first
    critic_before = [p.detach().clone() for p in critic.parameters()]
    for step in (1, 2):
        backward(gen, critic, step)  # the generator has gradients too: still untouched
        opt.active = {"critic"}
        opt.step()
        opt.zero_grad()
    after = clone_state(opt)
    for i, p in enumerate(gen.parameters()):
        assert torch.equal(p, params[i])
        assert set(after[i]) == {"step", "exp_avg", "exp_avg_sq"}
        assert all(torch.equal(after[i][k], state[i][k]) for k in after[i])
        assert after[i]["step"] == 1
    assert all(not torch.equal(p, q) for p, q in zip(critic.parameters(), critic_before))
    assert after[len(params)]["step"] == 3
    assert set(opt.grad_norms) == {"generator", "critic"}


def test_per_group_clipping_equals_clip_grad_norm_per_network():
    gen, critic = nets()
    gen_ref, critic_ref = copy.deepcopy(gen), copy.deepcopy(critic)
    opt = build_grouped_adamw(gen, critic, {**GEN, "max_grad_norm": 0.05}, {**CRITIC, "max_grad_norm": 0.3})
    ref_gen = torch.optim.AdamW(gen_ref.parameters(), lr=GEN["lr"], betas=GEN["betas"], weight_decay=GEN["weight_decay"])
    ref_critic = torch.optim.AdamW(critic_ref.parameters(), lr=CRITIC["lr"], betas=CRITIC["betas"],
                                   weight_decay=CRITIC["weight_decay"])
    for step in range(3):
        backward(gen, critic, step)
        backward(gen_ref, critic_ref, step)
        norm_gen = torch.nn.utils.clip_grad_norm_(gen_ref.parameters(), 0.05)
        norm_critic = torch.nn.utils.clip_grad_norm_(critic_ref.parameters(), 0.3)
        assert norm_gen > 0.05 and norm_critic > 0.3  # both clip
        opt.step()
        ref_gen.step()
        ref_critic.step()
        for o in (opt, ref_gen, ref_critic):
            o.zero_grad()
        assert torch.equal(opt.grad_norms["generator"], norm_gen)  # the pre-clip norm
        assert torch.equal(opt.grad_norms["critic"], norm_critic)
    for p, q in zip([*gen.parameters(), *critic.parameters()], [*gen_ref.parameters(), *critic_ref.parameters()]):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_all_active_equals_plain_adamw_and_clip_off():
    gen, critic = nets()
    gen_ref, critic_ref = copy.deepcopy(gen), copy.deepcopy(critic)
    opt = build_grouped_adamw(gen, critic, {**GEN, "max_grad_norm": 0.0}, CRITIC)
    ref = torch.optim.AdamW([
        {"params": list(gen_ref.parameters()), "lr": GEN["lr"], "betas": GEN["betas"], "weight_decay": GEN["weight_decay"]},
        {"params": list(critic_ref.parameters()), "lr": CRITIC["lr"], "betas": CRITIC["betas"],
         "weight_decay": CRITIC["weight_decay"]},
    ])
    for step in range(4):
        backward(gen, critic, step)
        backward(gen_ref, critic_ref, step)
        opt.step()
        ref.step()
        opt.zero_grad()
        ref.zero_grad()
    for p, q in zip([*gen.parameters(), *critic.parameters()], [*gen_ref.parameters(), *critic_ref.parameters()]):
        assert torch.equal(p, q)
    ours, theirs = opt.state_dict()["state"], ref.state_dict()["state"]
    assert all(torch.equal(ours[i][k], theirs[i][k]) for i in theirs for k in theirs[i])


def test_active_names_errors_and_unwrapping():
    gen, critic = nets()
    opt = build_grouped_adamw(gen, critic, GEN, CRITIC)
    assert opt.active == {"generator", "critic"} and opt.group_names == ["generator", "critic"]
    assert opt.set_active("critic").active == {"critic"}
    with pytest.raises(ValueError, match="unknown group"):
        opt.active = {"teacher"}
    with pytest.raises(ValueError, match="duplicate"):
        GroupedAdamW([{"name": "a", "params": list(gen.parameters())}, {"name": "a", "params": list(critic.parameters())}])

    class Wrapper:  # like DeepSpeed's ZeRO optimizer
        optimizer = opt

    assert find_grouped_optimizer(Wrapper()) is opt
    from lightning.pytorch.core.optimizer import LightningOptimizer

    assert find_grouped_optimizer(LightningOptimizer(opt)) is opt  # not the LightningOptimizer's dict copy


@pytest.mark.parametrize("cfg, message", [
    ({"lr": 1e-3, "betas": (0.0,)}, "betas"),
    ({"lr": -1.0}, "'lr' must be >= 0"),
    ({"lr": 1e-3, "max_grad_norm": -1}, "max_grad_norm"),
    ({"lr": 1e-3, "momentum": 0.9}, "unknown key"),
    ({"betas": (0.0, 0.9)}, "'lr' is required"),
])
def test_builder_config_errors(cfg, message):
    gen, critic = nets()
    with pytest.raises(ConfigError, match=message):
        build_grouped_adamw(gen, critic, cfg, CRITIC)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_grouped_adamw(gen.requires_grad_(False), critic, GEN, CRITIC)
