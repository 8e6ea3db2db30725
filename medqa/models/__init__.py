"""Models (domain floor): the one loader (`loading`), generation (`generation`), chat templates and model families
(`chat`, `chat_templates/`), and the bases the pipeline builds or fetches (`tiny`, `real`)."""
