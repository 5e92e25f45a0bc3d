"""What a rank's share of a sampled evaluation costs against one process playing every game: the time of
`run_episodes` on all N games, then on the last N/2 of them (`share=`, what rank 1 of two plays while rank 0 plays
the first half), alternating, one torch thread. Both play the same games (tests/test_distributed.py), so under
two ranks an evaluation's wall time is about the share's.

    python benchmarks/eval_split.py PongNoFrameskip-v4 --games 10 --max-frames 4000 --trials 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ppo2.envs import make_vector_env
from ppo2.evaluate import load_policy, recorded_env_id, run_episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a zoo id, a run directory or a Hub repo")
    ap.add_argument("--games", type=int, default=10, help="games in the whole evaluation (even)")
    ap.add_argument("--max-frames", type=int, default=4000, help="ALE frames per game at most (0: the game's own)")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_policy(args.source)
    env_id = recorded_env_id(model, args.source)
    kwargs = {"max_num_frames_per_episode": args.max_frames} if args.max_frames else {}

    def play(n: int, share: tuple[int, int] | None = None) -> float:
        envs = make_vector_env(env_id, n, **kwargs)
        try:
            start = time.perf_counter()
            run_episodes(model, envs, seed=3, deterministic=False, share=share)
            return time.perf_counter() - start
        finally:
            envs.close()

    whole, half = [], []
    for _ in range(args.trials):
        whole.append(play(args.games))
        half.append(play(args.games // 2, share=(args.games // 2, args.games)))
    ratios = [w / h for w, h in zip(whole, half)]
    print(f"{env_id}: all {args.games} games {[round(t, 1) for t in whole]} s, one rank's {args.games // 2} "
          f"{[round(t, 1) for t in half]} s; whole / share, median of {args.trials}: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
