"""Training: the engine, stages, optimisation, checkpoints and run state, distributed set-up, logging.

Modules are imported on use; importing this package imports nothing else.
"""
