"""Text every stage shares (base floor): the `<think>` chain (`think`) and personal-identifier scrubbing (`pii`)."""
