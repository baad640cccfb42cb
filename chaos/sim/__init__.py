"""The deterministic simulator: many consensus cores, a hostile network, crashing disks.

``chaos.sim.runner.run_seed(seed, SimParams(...))`` runs one fully seeded simulation and
returns a ``SeedResult``; ``raftkv-chaos sim`` runs many. Modules: network (links),
storage (disks that lose unsynced writes), faults (the schedule), cluster (the driver),
workload (clients), invariants and history (the checks), runner and report (seeds, CLI).
"""
