"""Developer tools: synthetic kernel trees for tests and benchmarks (``python -m irqagent.devtools``)."""
