"""Lab tooling: packet capture, path trace, diagrams, link shaping and the Mininet CLI (issue 6).

Modules: ``targets`` (where a tool acts: ``web-1``, ``node-1:flannel.1``, ``underlay:lan0``), ``capture`` + ``pcapng`` + ``packets`` + ``decode`` (multi-point capture),
``trace`` + ``trace_ctx`` + ``trace_model`` + ``trace_verify`` (the path of a packet and its proof),
``trace_nat`` + ``netfilter`` (what each namespace's iptables/nftables rules do to it: DNAT, masquerade, drops),
``graph_model`` + ``graph``
(pictures), ``units`` + ``shaping`` + ``component`` (tc shaping, also from the topology file), ``mnimport`` +
``mncli`` (Mininet's CLI on a lab). The CLI verbs live in ``emulator.cli.tool_cmds``, ``link_cmds``, ``mn_cmds``.
See docs/tools.md. Every tool reads the kernel through
``emulator.netlink.observe`` (one snapshot per namespace).
"""
