"""Commands above every floor (orchestrate): launching the training stages (`launch`), a Slurm job's checks before
launch (`preflight`) and the map of stages, commands and make targets (`stages`).

Stdlib only at import time: `make help` and `make`'s launcher choice import this package with the system Python."""
