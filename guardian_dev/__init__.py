"""Developer tools, outside the guardian's wheel and image: the local stack, drills, the demo, evaluation, benchmarks."""
