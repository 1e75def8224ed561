"""Training windows reproduce the run-time delayed history (history.py) exactly, padding included."""

import numpy as np
import pytest
import torch
from synthetic_data import synthetic_episodes, write_synthetic
from torch.utils.data import DataLoader

from diffuseloco_policy.config import load_config
from diffuseloco_policy.history import ObservationHistory
from diffuseloco_policy.normalizer import PolicyNormalizer
from diffuseloco_learning.training.trainer import fit_normalizer
from diffuseloco_learning.training.windows import EpisodeWindows, collate_batch

torch.set_num_threads(1)
CFG = load_config()
TO, H = CFG.observation.history, CFG.action.horizon
LENGTHS = (23, 5, 40)  # one episode shorter than the history


@pytest.fixture(scope="module")
def episodes():
    return synthetic_episodes(LENGTHS, seed=1)


def concat(episodes, key):
    return np.concatenate([e[key] for e in episodes])


def make(episodes, delayed=True):
    ends = np.cumsum([len(e["obs"]) for e in episodes])
    return EpisodeWindows(concat(episodes, "obs"), concat(episodes, "goal"), concat(episodes, "action"), ends,
                          TO, H, delayed=delayed)


@pytest.mark.parametrize("delayed", [True, False])
def test_windows_match_observation_history(episodes, delayed):
    """Replay each episode through ObservationHistory as the policy loop does and compare every tick."""
    windows = make(episodes, delayed)
    batch = windows.get_batch(np.arange(len(windows)))
    g = 0
    for ep in episodes:
        history = ObservationHistory.from_config(CFG)
        for t in range(len(ep["obs"])):
            if delayed:   # policy input for tick t: frames t-8..t-1, tick 0 seeded with s[0]
                obs_w, goal_w = history.step(ep["obs"][t], ep["goal"][t])
            else:         # ablation: the current frame included
                history.push(ep["obs"][t], ep["goal"][t])
                obs_w, goal_w = history.window()
            np.testing.assert_array_equal(batch["obs"][g].numpy(), obs_w, err_msg=f"obs, tick {t}")
            np.testing.assert_array_equal(batch["goal"][g].numpy(), goal_w, err_msg=f"goal, tick {t}")
            g += 1
    assert g == len(windows)


def test_delay_is_one_tick_and_never_sees_current_frame(episodes):
    windows = make(episodes)
    t = 30  # global tick inside episode 3 (starts at 28): ticks 28, 29 exist, the rest is padding
    obs = windows[t]["obs"][:, 0].numpy()  # obs[:, 0] is the global tick id
    np.testing.assert_array_equal(obs, [28, 28, 28, 28, 28, 28, 28, 29])
    mid = windows[10]["obs"][:, 0].numpy()
    np.testing.assert_array_equal(mid, np.arange(2, 10))
    assert t not in windows[t]["obs"][:, 0].numpy()
    ablation = make(episodes, delayed=False)
    np.testing.assert_array_equal(ablation[10]["obs"][:, 0].numpy(), np.arange(3, 11))


def test_action_chunk_covers_t_minus_8_to_t_plus_7_with_edge_padding(episodes):
    windows = make(episodes)
    actions = concat(episodes, "action")
    ends = np.cumsum(LENGTHS)
    starts = ends - np.array(LENGTHS)
    batch = windows.get_batch(np.arange(len(windows)))
    for e, (s, end) in enumerate(zip(starts, ends)):
        for t in range(s, end):
            expected = np.stack([actions[min(max(t - TO + k, s), end - 1)] for k in range(H)])
            np.testing.assert_array_equal(batch["action"][t].numpy(), expected)
            # receding horizon: chunk[execute_index] is the action of tick t itself
            np.testing.assert_array_equal(batch["action"][t, CFG.action.execute_index].numpy(), actions[t])


def test_zarr_loading_concatenates_datasets_and_dataloader_batches(tmp_path, episodes):
    a = write_synthetic(tmp_path / "a.zarr", lengths=(30, 12), seed=2)
    b = write_synthetic(tmp_path / "b.zarr", lengths=(25,), seed=3)
    windows = EpisodeWindows.for_config([a, b], CFG)
    assert len(windows) == 67 and windows.num_episodes == 3
    np.testing.assert_array_equal(windows.episode_ends, [30, 42, 67])
    # the first tick of the second dataset is an episode start: its window is 8 copies of its first frame
    first = windows[42]["obs"]
    assert torch.equal(first, first[:1].expand(TO, -1))
    # a DataLoader with a batch sampler fetches whole batches through __getitems__
    order = [[5, 42, 66, 0], [1, 2, 3, 4]]
    loader = DataLoader(windows, batch_sampler=order, collate_fn=collate_batch)
    for idx, got in zip(order, loader):
        want = windows.get_batch(idx)
        assert all(torch.equal(got[k], want[k]) for k in want)
    assert got["obs"].shape == (4, TO, 42) and got["goal"].shape == (4, TO, CFG.observation.goal_dim) and got["action"].shape == (4, H, 12)


def test_normalizer_is_fit_on_all_ticks(episodes):
    windows = make(episodes)
    got = fit_normalizer(windows)
    want = PolicyNormalizer.fit(concat(episodes, "obs"), concat(episodes, "goal"), concat(episodes, "action"))
    assert got.to_dict() == want.to_dict()


def test_bad_episode_ends_are_refused(episodes):
    obs, goal, act = (concat(episodes, k) for k in ("obs", "goal", "action"))
    with pytest.raises(ValueError):
        EpisodeWindows(obs, goal, act, np.array([10, 5, len(obs)]), TO, H)
    with pytest.raises(ValueError):
        EpisodeWindows(obs, goal, act, np.array([10, len(obs) - 1]), TO, H)
    with pytest.raises(IndexError):
        make(episodes).get_batch([len(obs)])
