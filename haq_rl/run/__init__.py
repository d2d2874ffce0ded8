"""The run directory: its file names (:mod:`~haq_rl.run.layout`), the episodes log
(:mod:`~haq_rl.run.episodes`), the writer's lock (:mod:`~haq_rl.run.lock`) and loading
finished runs into pandas (:mod:`~haq_rl.run.load`). On the task layer: no gymnasium."""
