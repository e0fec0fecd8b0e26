"""The benchmark grid: ``config`` (TOML schema and validation), ``runner`` (phases, resumable cells),
``training`` (one ``CrossEncoderTrainer`` run), ``report`` and ``stats`` (tables, significance).

Example:
    ::

        from st_distill.bench.config import load_config
        from st_distill.bench.runner import run_bench

        config = load_config("benchmarks/configs/mini.toml")
        run_bench(config)                 # writes runs/mini/, then runs/mini/report/
"""
