"""Training engine behind ``gem train``: :mod:`~gemseg.engine.train_loop` (read it top to bottom) and its helpers
:mod:`~gemseg.engine.optim`, :mod:`~gemseg.engine.data`, :mod:`~gemseg.engine.checkpointer`,
:mod:`~gemseg.engine.distributed`, :mod:`~gemseg.engine.logging`. See docs/training.md."""
