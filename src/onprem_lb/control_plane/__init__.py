"""The control-plane address: one address (IPv4, IPv6 or both) for kube-apiserver, held by one
control-plane node at a time, with no API server needed to decide who (`onprem-lb control-plane`).

Everything it needs is in a local file (settings.py), so it runs before `kubeadm init`. The
members (the control-plane nodes, listed in that file) send each other signed UDP heartbeats,
the same wire as the speakers' (speaker/layer2/members.py). Each node probes its own
kube-apiserver's ``/readyz`` (health.py) and says in its beats whether it is ready. The rule
that picks the holder is a pure function (owner.py): among the members this node hears that
are ready, the one already holding the address keeps it; else the first in MetalLB's order of
``sha256(node#address)``. A node holds nothing unless it hears a majority of the members (as a
speaker without the API, speaker/layer2/quorum.py), so the two sides of a split never both
answer. The holder puts the address on its loopback interface (the kernel then delivers
the packets to the local kube-apiserver) and answers ARP and neighbour solicitations for it
on the chosen interfaces (speaker/layer2/announcer.py), with a burst of gratuitous ARP and
unsolicited neighbour advertisements when it takes the address.
"""
