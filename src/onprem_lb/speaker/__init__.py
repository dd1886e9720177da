"""The speaker: an agent (agent.py) that owns the caches, the config, this speaker's Lease and the
loop, and hands one View (view.py) to each protocol behind a small interface (protocol.py):
layer 2 (layer2/: ARP and NDP) and BGP (bgp/: through FRR)."""
