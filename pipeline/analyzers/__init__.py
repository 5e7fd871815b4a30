"""OpenCV, Ollama and simulated analyzers; all answer the same contracts (pipeline.records)."""
