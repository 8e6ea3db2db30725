"""The LLM teacher: an asynchronous OpenAI-compatible judge client with a durable cache, an offline judge
server, cross-rank batching and the `medqa teacher` command. Import the submodules you need; this package
imports nothing heavy (no torch, no aiohttp) by itself."""
