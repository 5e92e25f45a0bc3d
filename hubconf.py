"""torch.hub entry points for ppo2. This file is a table of contents: the code lives in the ppo2 package.

    model = torch.hub.load('andompesta/ppo2', 'ppo2', pretrained=True)
    act = torch.hub.load('andompesta/ppo2', 'eval_fn', model)
"""
dependencies = ["torch", "numpy", "gymnasium", "safetensors"]

from ppo2.torch_hub import eval_fn, ppo2, train_fn  # noqa: E402,F401
