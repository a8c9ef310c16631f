"""``astats``: the operator's console for a running stack, on the host (see README, *astats*).

It reaches the engine through the Docker SDK (the local socket or ``DOCKER_HOST``) and finds a
stack's containers by their ``astats.stack`` and ``astats.service`` labels, never by name.
Inside containers it only runs ``python3 -m astats_ops`` and standard tools.
"""
