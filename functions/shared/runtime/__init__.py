"""How a function runs: its settings, its AWS clients, its logger, tracer and metrics, consumer wiring."""
