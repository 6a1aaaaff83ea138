"""The captioning flow, one module per step.

read records (``vidcap.io``) -> check them (``check``) -> plan and decode in worker
processes (``decode``) -> build and length-check requests (``requests``) -> generate
(``vidcap.engines``) -> assemble output records (``assemble``) -> write (``vidcap.io``).
``runner`` strings the steps together; ``stats`` counts what each did.
"""
