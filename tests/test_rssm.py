"""RSSM-only tests: DreamerV3's outcome heads on the whole next state and its learned start state (the
protocol's contract tests, shared by every world model, are in test_world_models.py)."""

from __future__ import annotations

import torch

from tests.world_model_fixtures import batch, make_model


def test_reward_and_continuation_read_the_whole_next_state():
    """The heads see [z, h] of the state an action leads to, so two imagined states with the same h and
    different latents z can differ in predicted continuation."""
    m = make_model("rssm")
    b = batch("vector")
    with torch.no_grad():
        state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        ro = m.imagine(state, torch.randint(0, 3, (3, 4)), 4)
        reward, cont = m.heads.predict(ro.feat[:, 1:])
        assert torch.allclose(cont, ro.cont) and torch.allclose(reward, ro.reward)
        other = ro.feat[:, 1:].clone()
        other[..., :m.latent_dim] = other[..., :m.latent_dim].roll(1, -1)  # another one-hot latent, same h
        assert not torch.allclose(m.heads.predict(other)[1], cont)


def test_training_heads_read_the_posterior_of_the_next_observation_where_it_exists():
    """Where row t+1 continues the episode, reward_t is predicted from the posterior state of obs_t+1, so
    obs_t+1 reaches row t's head input; after an episode's last row it is a prior sample from g_t,
    which the next episode's first observation cannot reach."""
    m = make_model("rssm").train()
    b = batch("vector", B=2, T=6)
    b["is_first"][:] = False
    b["is_first"][:, 0] = b["is_first"][:, 3] = True  # rows 0-2 and 3-5 are two episodes
    b["obs"].requires_grad_(True)
    seen = []
    loss = m.heads.loss
    m.heads.loss = lambda h, reward, terminal: seen.append(h) or loss(h, reward, terminal)
    m.loss(b)
    head_input = seen[0]  # (B, T, F)

    def reaches(row: int, obs_row: int) -> bool:
        grad, = torch.autograd.grad(head_input[:, row].sum(), b["obs"], retain_graph=True)
        return bool(grad[:, obs_row].abs().sum() > 0)

    assert reaches(1, 2)  # obs_2 follows row 1 in its episode
    assert not reaches(2, 3)  # obs_3 starts the next episode


def test_an_episode_start_has_the_learned_initial_state():
    m = make_model("rssm")
    with torch.no_grad():
        m.initial_weight.copy_(torch.randn_like(m.initial_weight))
    b = batch("vector")
    state, _ = m.observe(m.initial(3), b["obs"][:, 0], b["action"][:, 0], torch.ones(3, dtype=torch.bool))
    assert torch.allclose(state.h, torch.tanh(m.initial_weight).expand(3, -1))
    m.train()
    m.loss(b)[0].backward()
    assert m.initial_weight.grad is not None and m.initial_weight.grad.abs().sum() > 0


def test_starts_from_the_loss_are_the_states_observing_the_same_rows_gives():
    """rssm.imagine_from=loss: the states the loss hands on for imagination at the last rows of each
    sequence are those `observe_sequence` filters over the same rows (the same latent draws)."""
    m = make_model("rssm").train()
    b = batch("vector", B=3, T=10)
    torch.manual_seed(5)
    _, _, starts = m.loss_and_starts(b, 2)
    assert starts.h.shape[0] == starts.z.shape[0] == 6 and not starts.h.requires_grad
    for row, t in [(0, 8), (1, 9), (4, 8), (5, 9)]:  # sequence-major: sequence row // 2, position T - 2 + row % 2
        seq = row // 2
        torch.manual_seed(5)
        with torch.no_grad():
            want = m.observe_sequence(b["obs"][:, :t + 1], b["action"][:, :t + 1], b["is_first"][:, :t + 1])
        assert torch.allclose(starts.h[row], want.h[seq], atol=1e-6)
        assert torch.allclose(starts.z[row], want.z[seq], atol=1e-6)
