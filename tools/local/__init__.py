"""The Docker-free local stack: moto's server, the template deployed into it, the handlers in-process."""
