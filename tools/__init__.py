"""The operator's command line (ebbot-webhooks, or python -m tools) and the project's layer over motostack."""
