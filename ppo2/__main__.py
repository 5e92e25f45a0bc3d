"""`python -m ppo2 --env CartPole-v1`: train.py's command line (what each process that `--processes` starts runs)."""
if __name__ == "__main__":
    import gc

    gc.disable()  # (cli() freezes torch's import-time objects and turns collection back on: train.py's reason)
    from ppo2.trainer import cli

    cli()
