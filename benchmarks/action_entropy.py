"""How decided a discrete-action policy is where it plays: its entropy over the actions, step by step, along
episodes it plays with sampled actions (seeds SEED, SEED+1, ...).

ALE games list actions that differ only by FIRE (Pong: RIGHT and RIGHTFIRE move the paddle the same way), so a
policy can be certain of its move and still spread its probability over both; for those games the entropy is
also given over the moves (FIRE merged into the move it comes with).

    python benchmarks/action_entropy.py PongNoFrameskip-v4 --episodes 3   # a zoo id, a run directory or a Hub repo
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from ppo2.env_ids import is_atari
from ppo2.evaluate import load_policy, recorded_env_id


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("--episodes", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_policy(args.source)
    env_id = recorded_env_id(model, args.source)
    env = model.make_env()
    n = int(env.action_space.n)
    groups = {"all": [[a] for a in range(n)]}
    if is_atari(env_id):
        moves: dict[str, list[int]] = {}
        for a, name in enumerate(env.unwrapped.get_action_meanings()):
            moves.setdefault(name.replace("FIRE", "") or "NOOP", []).append(a)
        groups["moves"] = list(moves.values())
    rng = np.random.default_rng(args.seed)
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        done, total, h = False, 0.0, {k: [] for k in groups}
        top = []
        while not done:
            with torch.no_grad():  # (the probability of each action, from the policy's own log-probabilities)
                _, _, neg_log_prob, _ = model(torch.as_tensor(np.repeat(obs[None], n, 0)), action=torch.arange(n))
            p = torch.exp(-neg_log_prob).double().numpy()
            p /= p.sum()
            for k, g in groups.items():
                q = np.array([p[idx].sum() for idx in g])
                h[k].append(entropy(q))
            top.append(q.max())  # (the last grouping's: the moves where there are any)
            obs, reward, terminated, truncated, _ = env.step(int(rng.choice(n, p=p)))
            total += float(reward)
            done = terminated or truncated
        parts = [f"over {len(groups[k])} {'actions' if k == 'all' else 'moves'} {np.mean(v):.2f} nats "
                 f"(at most {np.log(len(groups[k])):.2f})" for k, v in h.items()]
        print(f"{env_id} episode {episode} (seed {args.seed + episode}): return {total:g} in {len(top)} steps; "
              f"entropy {'; '.join(parts)}; the likeliest {'move' if 'moves' in groups else 'action'}'s probability: "
              f"median {np.median(top):.2f}, under 0.6 on {np.mean(np.array(top) < 0.6):.0%} of steps")


if __name__ == "__main__":
    main()
