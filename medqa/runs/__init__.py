"""Run folders and their inputs (base floor): atomic writes and output rules (`io`), checkpoints and run identity
(`checkpoints`), preemption and rank-0 decisions (`preemption`), recipes (`recipes`) and the typed options they fill
(`argtypes`), and throughput counters (`throughput`). Imports nothing above the base floor."""
