"""Who holds which GPU: the attribution model behind `NodeSnapshot.allocations`.

`derive.py` turns a snapshot's GPUs and processes (plus what optional allocation sources
say: a DS01-style state file, Slurm, Kubernetes) into one entry per GPU or MIG slice and
holder; `collectors/allocation.py` runs it every interval on the agent. Agent-side code:
nothing here may import hub-only libraries.
"""
