"""The project's command line: sample events, the Docker-free local stack and operator commands."""
