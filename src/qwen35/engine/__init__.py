"""qwen35.engine: token ids in, token ids out (EngineArgs -> build -> LLMEngine / AsyncEngine).

Sees no text, JSON, HTTP or database; only `engine.runner` imports the model. Each step is
schedule (scheduler, plain data) -> run (runner: forward + sampling) -> update (scheduler, plain data).
"""
