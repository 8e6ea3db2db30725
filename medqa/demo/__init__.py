"""`medqa demo` (orchestrate floor): the pipeline run stage by stage (`pipeline`) and its one report (`report`)."""
