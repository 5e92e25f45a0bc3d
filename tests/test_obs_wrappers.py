"""ppo2's observation options for any non-ALE env (`frame_stack`, `grayscale`, `resize`; ppo2/obs_wrappers.py):
values against hand-written stacks, refusals naming what was expected, the same frames in the trainer's vector env
and in `make_env`, recorded with the policy, and a task that only a stacked policy learns."""
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import toy_envs  # noqa: F401  (registers ppo2test/*)
from ppo2 import PPO2
from ppo2.env_kwargs import frame_options, validate_env_kwargs
from ppo2.envs import make_env, make_vector_env
from ppo2.evaluate import evaluate_policy
from ppo2.obs_wrappers import SkipFrames, StackFrames, TransformFrames
from ppo2.trainer import train


def test_vectors_are_stacked_oldest_first_with_zeros_and_cleared_at_autoreset():
    envs = make_vector_env("ppo2test/Count-v0", 2, frame_stack=3)  # (obs = [steps taken]; episodes of 3 steps)
    assert envs.observation_space.shape == (2, 3)
    obs, _ = envs.reset(seed=0)
    seen = [obs[0].tolist()]
    for _ in range(5):
        obs, *_ = envs.step(np.zeros(2, np.int64))
        seen.append(obs[0].tolist())
    # steps 1-3 end the episode; the next step is gymnasium's autoreset (the new episode's first observation)
    assert seen == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 0], [0, 0, 1]]
    envs.close()


def test_a_skipped_frame_adds_its_reward_and_an_episode_end_stops_the_repeats():
    env = make_env("ppo2test/Count-v0", frame_skip=2)  # (reward 1 a step, episodes of 3 steps)
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, *_ = env.step(0)
    assert (obs.tolist(), reward, terminated) == ([2.0], 2.0, False)
    obs, reward, terminated, *_ = env.step(0)
    assert (obs.tolist(), reward, terminated) == ([3.0], 1.0, True)
    envs = make_vector_env("ppo2test/Count-v0", 2, frame_skip=2, frame_stack=2)
    obs, _ = envs.reset(seed=0)
    obs, reward, *_ = envs.step(np.zeros(2, np.int64))
    assert obs[0].tolist() == [0.0, 2.0] and reward.tolist() == [2.0, 2.0]


class _Frames(gym.Env):
    """uint8 frames of a given shape whose every pixel is the step count (so a stack shows its order)."""

    def __init__(self, shape):
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.full(self.observation_space.shape, 10, np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full(self.observation_space.shape, 10 + self.t, np.uint8), 0.0, False, False, {}


@pytest.mark.parametrize("shape, stacked, channel_of", [
    ((40, 40, 3), (40, 40, 6), lambda o, i: o[0, 0, 3 * i]),   # HWC: along the last axis
    ((3, 40, 40), (6, 40, 40), lambda o, i: o[3 * i, 0, 0]),   # CHW: along the first
    ((40, 40), (40, 40, 2), lambda o, i: o[0, 0, i]),          # a gray frame gains a channel axis
])
def test_images_are_stacked_along_their_channels(shape, stacked, channel_of):
    env = StackFrames(_Frames(shape), 2)
    assert env.observation_space.shape == stacked and env.observation_space.dtype == np.uint8
    obs, _ = env.reset()
    assert obs.shape == stacked and [int(channel_of(obs, i)) for i in range(2)] == [0, 10]
    obs, *_ = env.step(0)
    assert [int(channel_of(obs, i)) for i in range(2)] == [10, 11]
    assert env.observation_space.contains(obs)


if "ppo2test/Frames-v0" not in gym.registry:
    gym.register("ppo2test/Frames-v0", entry_point=_Frames, kwargs={"shape": (20, 30, 3)})


def test_resize_grayscale_and_stack_make_the_frames_a_cnn_takes():
    gray = make_vector_env("ppo2test/Frames-v0", 2, resize=[36, 48], grayscale=True, frame_stack=4)
    assert gray.observation_space.shape == (2, 36, 48, 4)
    colour = make_vector_env("ppo2test/Frames-v0", 2, resize=[36, 36])
    assert colour.observation_space.shape == (2, 36, 36, 3)
    obs, _ = colour.reset(seed=0)
    np.testing.assert_array_equal(obs, 10)  # (a uniform frame stays uniform at any size)
    model = PPO2(observation_space=gray.single_observation_space, action_space=gray.single_action_space)
    obs, _ = gray.reset(seed=0)
    assert obs.shape == (2, 36, 48, 4) and (obs[..., :3] == 0).all() and (obs[..., 3] == 10).all()
    assert model.predict(obs)[0].shape == (2,)


class _Still(gym.Env):
    """One fixed observation (an image, or a Dict of them), whatever the action."""

    def __init__(self, obs, space):
        self.obs, self.observation_space, self.action_space = obs, space, spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.obs, {}

    def step(self, action):
        return self.obs, 0.0, False, False, {}


def _image(array):
    return _Still(array, spaces.Box(0, 255, array.shape, np.uint8))


# a 4 x 6 frame whose 2 x 3 blocks hold 0, 10, 20 (top) and 30, 40, 50 (bottom), two pixels each (of 2 x 2 blocks)
BLOCKS = np.kron(np.array([[0, 10, 20], [30, 40, 50]]), np.ones((2, 2))).astype(np.uint8)
BLOCKS[0, 0], BLOCKS[1, 1] = 4, 8  # (the top left block's mean: (4 + 0 + 0 + 8) / 4 = 3)


@pytest.mark.parametrize("layout", ["HW", "HWC", "CHW"])
def test_resize_averages_each_area_and_keeps_the_layout(layout):
    expected = np.array([[3, 10, 20], [30, 40, 50]], np.uint8)
    frame, want = BLOCKS, expected
    if layout != "HW":
        frame, want = np.stack([BLOCKS, 255 - BLOCKS], -1), np.stack([expected, np.array([[252, 245, 235],
                                                                                            [225, 215, 205]])], -1)
    if layout == "CHW":
        frame, want = np.moveaxis(frame, -1, 0), np.moveaxis(want, -1, 0)
    env = TransformFrames(_image(frame), resize=(2, 3))
    assert env.observation_space == spaces.Box(0, 255, want.shape, np.uint8)
    np.testing.assert_array_equal(env.reset()[0], want)


def test_a_resize_that_would_flip_the_channel_axis_is_refused():
    with pytest.raises(ValueError, match=r"resize=\[2, 2\] would turn \(4, 6, 3\) frames into \(2, 2, 3\), whose "
                                         r"channel axis reads the other way"):
        TransformFrames(_image(np.zeros((4, 6, 3), np.uint8)), resize=(2, 2))


@pytest.mark.parametrize("channels_last", [True, False])
def test_grayscale_weighs_red_green_and_blue_as_bt709(channels_last):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0], rgb[1, 1] = (100, 200, 50), (255, 255, 255)  # 0.2125*100 + 0.7154*200 + 0.0721*50 = 167.935
    env = TransformFrames(_image(rgb if channels_last else np.moveaxis(rgb, -1, 0)), grayscale=True)
    assert env.observation_space == spaces.Box(0, 255, (4, 4), np.uint8)
    expected = np.zeros((4, 4), np.uint8)
    expected[0, 0], expected[1, 1] = 167, 255  # (truncated, as gymnasium's)
    np.testing.assert_array_equal(env.reset()[0], expected)


def test_resize_and_grayscale_match_gymnasiums_wrappers_on_channels_last_frames():
    frame = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    ours = TransformFrames(_image(frame), resize=(19, 11), grayscale=True).reset()[0]
    theirs = gym.wrappers.GrayscaleObservation(gym.wrappers.ResizeObservation(_image(frame), (19, 11))).reset()[0]
    assert ours.shape == (19, 11)
    np.testing.assert_array_equal(ours, theirs)


def test_a_dicts_images_are_resized_each_and_only_its_rgb_ones_turned_gray():
    rgb = np.stack([BLOCKS] * 3, -1)
    obs = {"camera": np.moveaxis(rgb, -1, 0), "depth": BLOCKS, "joints": np.array([0.5, -1.0], np.float32),
           "action_mask": np.array([1, 0], np.int8)}
    space = spaces.Dict({"camera": spaces.Box(0, 255, (3, 4, 6), np.uint8),
                         "depth": spaces.Box(0, 255, (4, 6), np.uint8),
                         "joints": spaces.Box(-1, 1, (2,), np.float32), "action_mask": spaces.MultiBinary(2)})
    env = TransformFrames(_Still(obs, space), resize=(2, 3), grayscale=True)
    assert {k: s.shape for k, s in env.observation_space.items()} == {
        "camera": (2, 3), "depth": (2, 3), "joints": (2,), "action_mask": (2,)}
    out = env.reset()[0]
    small = [[3, 10, 20], [30, 40, 50]]  # (a gray pixel (v, v, v) weighs to v: the weights sum to 1)
    np.testing.assert_array_equal(out["camera"], small)
    np.testing.assert_array_equal(out["depth"], small)
    assert out["joints"] is obs["joints"] and out["action_mask"] is obs["action_mask"]
    env = TransformFrames(_Still(obs, space), grayscale=True)  # (the gray depth image has nothing to lose)
    assert env.observation_space["depth"].shape == (4, 6) and env.observation_space["camera"].shape == (4, 6)
    assert env.observation_space.contains(env.reset()[0])


def test_a_dicts_entries_are_stacked_each_and_its_action_mask_is_not():
    envs = make_vector_env("ppo2test/MaskedChoice-v0", 1, frame_stack=3)  # ({'obs': (d,) target, 'action_mask'})
    space = envs.single_observation_space
    d = space["action_mask"].n
    assert space["obs"].shape == (3 * d,) and space["action_mask"] == spaces.MultiBinary(d)
    obs, _ = envs.reset(seed=0)
    first = obs["obs"][0, 2 * d:].copy()
    assert (obs["obs"][0, :2 * d] == 0).all() and first.sum() == 1
    obs, *_ = envs.step(np.array([int(first.argmax())]))
    np.testing.assert_array_equal(obs["obs"][0, d:2 * d], first)  # (the first target, one frame older)
    assert obs["action_mask"].shape == (1, d) and obs["action_mask"][0, obs["obs"][0, 2 * d:].argmax()] == 1
    model = PPO2(observation_space=space, action_space=envs.single_action_space)
    assert model.predict(obs)[0].shape == (1,)


def test_a_dict_policy_trains_and_plays_on_resized_stacked_camera_frames(tmp_path):
    """PixelMasked-v0: a (36, 36, 1) screen beside a vector and an action mask; resized to 40x48 and stacked, trained
    for two updates, saved and played back from its directory with the recorded options."""
    run = tmp_path / "run"
    kwargs = {"resize": [40, 48], "frame_stack": 2}
    train("ppo2test/PixelMasked-v0", env_kwargs=kwargs, total_timesteps=256, num_envs=2, num_steps=64,
          num_minibatches=2, seed=0, output_dir=str(run), progress=False, tensorboard=False, plot=False,
          eval_episodes=2)
    model = PPO2.from_pretrained(run)
    env = model.make_env()
    assert {k: s.shape for k, s in env.observation_space.items()} == {"screen": (40, 48, 2), "pos": (6,),
                                                                       "action_mask": (3,)}
    obs, _ = env.reset(seed=0)
    assert (obs["screen"][..., 0] == 0).all() and obs["screen"][..., 1].max() == 255  # (zeros, then the first)
    action = model.predict(obs, action_masks=obs["action_mask"])[0]
    assert obs["action_mask"][action] == 1
    assert evaluate_policy(model, "ppo2test/PixelMasked-v0", n_episodes=2, seed=0)["n_episodes"] == 2


def test_the_trainers_frames_are_the_ones_make_env_gives():
    kwargs = dict(frame_stack=3)
    envs = make_vector_env("CartPoleNoVel-v1", 1, **kwargs)
    env = make_env("CartPoleNoVel-v1", **kwargs)
    a, _ = envs.reset(seed=7)
    b, _ = env.reset(seed=7)
    np.testing.assert_array_equal(a[0], b)
    for action in (1, 0, 1, 1):
        a, *_ = envs.step(np.array([action]))
        b, *_ = env.step(action)
        np.testing.assert_array_equal(a[0], b)


@pytest.mark.parametrize("kwargs, env_id, message", [
    ({"frame_stack": 0}, "CartPole-v1", r"\['frame_stack'\] must be an int in \[1, 64\] for CartPole-v1, got 0"),
    ({"frame_stack": True}, "CartPole-v1", r"must be an int in \[1, 64\].*got True"),
    ({"frame_stack": 2.0}, "CartPole-v1", r"must be an int in \[1, 64\].*got 2.0"),
    ({"resize": [84]}, "CarRacing-v3", r"\['resize'\] must be \[H, W\], two ints in \[1, 4096\].*got \[84\]"),
    ({"resize": [84, 0]}, "CarRacing-v3", r"must be \[H, W\]"),
    ({"grayscale": "yes"}, "CarRacing-v3", r"\['grayscale'\] must be true or false"),
    ({"frame_skip": 0}, "CarRacing-v3", r"\['frame_skip'\] must be an int in \[1, 64\]"),
    ({"frame_stack": 4}, "PongNoFrameskip-v4", r"takes \[.*\] \(its frames are always 84x84 gray, 4 stacked"),
])
def test_bad_options_are_refused_naming_what_is_taken(kwargs, env_id, message):
    with pytest.raises(ValueError, match=message):
        validate_env_kwargs(kwargs, env_id)


def test_resize_takes_the_sides_a_policy_takes():
    from ppo2.observations import MAX_IMAGE_SIDE

    assert validate_env_kwargs({"resize": [MAX_IMAGE_SIDE, 8]}, "CarRacing-v3") == {"resize": [MAX_IMAGE_SIDE, 8]}
    with pytest.raises(ValueError, match=r"\['resize'\] must be \[H, W\]"):
        validate_env_kwargs({"resize": [MAX_IMAGE_SIDE + 1, 8]}, "CarRacing-v3")


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("CartPole-v1", {"resize": [36, 36]}, r"resize takes image observations: a uint8 Box .*got Box"),
    ("CartPole-v1", {"grayscale": True}, r"grayscale takes RGB frames \(\(H, W, 3\) or \(3, H, W\)\)"),
    ("ppo2test/MaskedChoice-v0", {"resize": [8, 8]}, r"resize takes image observations.*or a Dict with such an entry"),
    ("ppo2test/IntegerIdentity-v0", {"kind": "dict", "frame_stack": 2},
     r"frame_stack takes vector or image observations .*got Discrete.* in the Dict's 'target'"),
])
def test_an_option_the_env_cannot_take_is_refused_naming_the_env(env_id, kwargs, message):
    for make in (lambda: make_vector_env(env_id, 1, **kwargs), lambda: make_env(env_id, **kwargs)):
        with pytest.raises(ValueError, match=f"{env_id} was made with the arguments .*{message}"):
            make()
    with pytest.raises(ValueError, match=r"grayscale takes RGB frames .*got Box\(0, 255, \(40, 40\), uint8\)"):
        make_env("ppo2test/Frames-v0", shape=(40, 40), grayscale=True)  # (gray frames already)


class _OwnStack(_Frames):
    """An env whose constructor takes `frame_stack` itself (its own meaning: here, the frames' shade)."""

    def __init__(self, frame_stack=1):
        super().__init__((40, 40))
        self.shade = frame_stack


if "ppo2test/OwnStack-v0" not in gym.registry:
    gym.register("ppo2test/OwnStack-v0", entry_point=_OwnStack)


def test_an_argument_the_constructor_takes_itself_is_the_constructors():
    """MuJoCo's `frame_skip` sets its simulation's time step (RL-Zoo passes env_kwargs to the constructor); ppo2's
    SkipFrames, which repeats an action and sums its rewards, would be another env. A name the constructor does not
    take stays ppo2's."""
    cheetah = make_env("HalfCheetah-v5", frame_skip=10, frame_stack=2)
    assert cheetah.unwrapped.frame_skip == 10 and cheetah.unwrapped.dt == pytest.approx(0.1)
    assert isinstance(cheetah, StackFrames) and not any(isinstance(w, SkipFrames) for w in _chain(cheetah))
    assert cheetah.observation_space.shape == (34,)  # (17 numbers, two frames)
    envs = make_vector_env("HalfCheetah-v5", 1, frame_skip=10)
    assert envs.envs[0].unwrapped.frame_skip == 10 and envs.single_observation_space.shape == (17,)
    assert frame_options({"frame_skip": 10, "frame_stack": 2}, "HalfCheetah-v5") == {"frame_stack": 2}
    assert validate_env_kwargs({"frame_skip": 100}, "HalfCheetah-v5") == {"frame_skip": 100}  # (not ppo2's range)
    with pytest.raises(ValueError, match=r"\['frame_skip'\] must be an int in \[1, 64\] for CartPole-v1"):
        validate_env_kwargs({"frame_skip": 100}, "CartPole-v1")
    own = make_env("ppo2test/OwnStack-v0", frame_stack=3)
    assert own.unwrapped.shade == 3 and own.observation_space.shape == (40, 40)
    assert not isinstance(make_env("CartPole-v1", frame_skip=2).unwrapped, SkipFrames)
    assert isinstance(make_env("CartPole-v1", frame_skip=2), SkipFrames)


def _chain(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def test_stacking_lets_a_feed_forward_policy_solve_cartpole_without_velocities(tmp_path):
    """CartPoleNoVel-v1 shows positions only; four stacked frames show their motion. Seeds 1-3 solve it (100 fresh
    episodes at 475) within 20,480 steps; one frame alone is at ~45 after 50,000."""
    run = tmp_path / "run"
    model = train("CartPoleNoVel-v1", recurrent=False, env_kwargs={"frame_stack": 4}, total_timesteps=40_960,
                  seed=1, output_dir=str(run), progress=False, tensorboard=False, plot=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary.get("solved_at") is not None, summary
    assert model.env_kwargs == {"frame_stack": 4}
    assert json.loads((run / "config.json").read_text())["env_kwargs"] == {"frame_stack": 4}
    loaded = PPO2.from_pretrained(run)
    res = evaluate_policy(loaded, "CartPoleNoVel-v1", n_episodes=5, seed=0)  # (plays with the recorded stack)
    assert res["mean_reward"] >= 475
    unstacked, _ = gym.make("CartPoleNoVel-v1").reset(seed=0)
    for call in (loaded.predict, loaded):  # (numpy's path and torch's)
        with pytest.raises(ValueError, match=r"shape \(2,\), expected \(N, 8\) or \(8,\)\. This policy was trained on "
                                             r"CartPoleNoVel-v1 with frame_stack=4: model.make_env\(\) makes that env"):
            call(unstacked)
    obs, _ = loaded.make_env().reset(seed=0)
    assert obs.shape == (8,) and loaded.predict(obs)[0] in (0, 1)
