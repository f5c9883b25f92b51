"""The lab's state on disk, the lowest layer that knows what a lab is.

``paths`` (where a lab keeps its files, at the real node paths), ``store`` (the API objects as JSON files, one
writer per file, with the per-node pod index), ``watch`` (inotify on a store directory), ``record`` (what a lab
owns: namespaces and process PIDs, written before anything is created), ``events``, ``manifests`` (topology →
Kubernetes-shaped objects) and ``resolv`` (pods' resolv.conf under /etc/netns, by ledger). Everything above —
agents, daemons, the builder, the CLI — reads and writes the lab through these modules.
"""
