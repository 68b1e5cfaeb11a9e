"""Dify workflows without I/O: the app DSL, graph validation, the variable pool and its
templates, if-else conditions, and the scheduler that folds a run's recorded history into what
runs next. Node executors (LLM, HTTP, code) and the engine's consumer group live elsewhere."""
