"""Layer 2 mode: one node answers ARP (IPv4) and NDP (IPv6) for each service address.

election   who announces each address (pure; MetalLB's order), and why a node may not
handover   after the election: announce, keep during a handover, or drop, with the reason (pure)
members    fast failure detection between speakers (UDP heartbeats)
announcer  the frames and the raw sockets that answer for owned addresses
protocol   the layer 2 handler behind the speaker's protocol interface (status objects included)
"""
