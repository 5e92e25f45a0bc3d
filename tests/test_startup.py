"""The command a user runs: what it imports, and that every file it promises is complete when it returns."""
import json
import subprocess
import sys

from conftest import REPO

HEAVY = ("torch._dynamo", "tensorboard", "torch.utils.tensorboard", "matplotlib")

PROBE = """
import atexit, json, sys
sys.argv = ["train.py", "--env", "CartPole-v1", "--output-dir", sys.argv[1]]
import ppo2.trainer as T
seen = {}
learn = T.Trainer.learn
def probe(self):
    seen["before_training"] = sorted(m for m in %r if m in sys.modules)
    return learn(self)
T.Trainer.learn = probe
atexit.register(lambda: print("PROBE " + json.dumps({**seen, "at_exit": sorted(m for m in %r if m in sys.modules)})))
sys.exit(T.main())
""" % (HEAVY, HEAVY)


def test_default_command_imports_nothing_heavy_and_returns_with_every_file_complete(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", PROBE, str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.split("PROBE ")[1])
    # torch.optim would import torch._dynamo (~1.4 s); TensorBoard and matplotlib live in the companion process
    assert seen == {"before_training": [], "at_exit": []}, seen
    # no waiting here: a container, batch job or CI step that uploads the directory next must find it complete
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert not (out / "outputs.log").exists() or "Traceback" not in (out / "outputs.log").read_text()
    events = list((out / "tb").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 1000
    rows = (out / "metrics.csv").read_text().count("\n") - 1
    assert rows >= 1 and (out / ".finished").exists()


def test_companion_writes_every_row_after_the_resume_point(tmp_path):
    """`python -m ppo2.companion` on a finished run's metrics.csv: one scalar per metric and row."""
    from ppo2.companion import follow
    from ppo2.outputs import METRICS

    (tmp_path / "metrics.csv").write_text(",".join(METRICS) + "\n" + "\n".join(
        ",".join(str(u) if k == "update" else str(100 * u) if k == "global_step" else ("" if k == "eval_std" else "1.5")
                 for k in METRICS) for u in (1, 2, 3)) + "\n")
    (tmp_path / ".finished").write_text("0")
    follow(tmp_path, tensorboard=True, plot=False, after_update=1)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/episode_return")]
    assert steps == [200, 300]  # update 1 was written before the resume point
    assert "eval/eval_std" not in acc.Tags()["scalars"] and len(acc.Tags()["scalars"]) == len(METRICS) - 3
    assert [e.value for e in acc.Scalars("train/loss")] == [1.5, 1.5]


def test_companion_imports_neither_torch_nor_the_trainer():
    """The companion starts with the run and must be ready before it ends: it never imports torch (~1 s)."""
    probe = "import sys, ppo2.companion; print(sorted(m for m in ('torch', 'gymnasium', 'ppo2.model') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


GC_PROBE = """
import gc, json, runpy, sys
import ppo2.trainer as T
def main(argv=None):
    print("GC " + json.dumps({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    return 0
T.main = main
sys.argv = ["train.py"]
runpy.run_path("train.py", run_name="__main__")
"""


def test_command_freezes_its_imports_out_of_the_garbage_collector():
    """train.py and `ppo2-train` (cli) hide torch's import-time objects from full collections, and collect
    again before training (a disabled collector would let cyclic garbage grow for the whole run)."""
    done = subprocess.run([sys.executable, "-c", GC_PROBE], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.split("GC ")[1])
    assert seen["enabled"] is True and seen["frozen"] > 100_000, seen
