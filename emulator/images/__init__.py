"""Built-in workloads that lab pods run as their "containers".

``netexec`` is an echo server modelled on Kubernetes' agnhost ``netexec``; run it with
``python3 -m emulator.images.netexec``. Nothing is imported here so that starting an image stays fast.
"""
