"""Labs over several machines: the controller drives every host over SSH, each host builds its part.

- ``controller``: up/down/status across hosts, all at once; ``labcheck``: ``host check`` and the pod matrix;
- ``transport``: one paramiko connection and channel per host; ``protocol``: the JSON lines on it;
- ``serve``: the host's side (``podlab host serve``), built on ``lab.builder`` with the host's nodes;
- ``plan``: one plan per host and the proof pairs (pure); ``stretch``: the VXLAN port of ``lan0`` and the MTU;
- ``records``: the controller's record of hosts; ``emulated``: N emulated hosts on one machine, for tests.
"""
