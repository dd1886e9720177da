"""BGP mode (not built yet): announcements through FRR on the node.

It plugs in beside layer 2, behind the same interface (onprem_lb.speaker.protocol.Protocol):
the agent hands it the same view (config snapshot with BGP peers and advertisements,
Services, endpoints, nodes, whether this speaker may announce) and it renders FRR's
configuration (pure), applies it with frr-reload.py and writes ServiceBGPStatus objects.
Nothing in layer2/ is needed here, and nothing here may reach into layer2/.
"""
