"""What a namespace's netfilter rules do to one new packet, for ``trace``: a reader of the rules the kernel holds
(``ruleset``), parsers and walkers of iptables and nftables (``iptables``, ``nft``) and the vocabulary they
share (``model``). Everything but ``ruleset.read`` is pure, so recorded rulesets are tested without root."""
