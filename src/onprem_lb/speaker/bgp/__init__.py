"""BGP mode: announcements through FRR on the node (``onprem-lb speaker --bgp``).

It sits beside layer 2, behind the same interface (onprem_lb.speaker.protocol.Protocol,
implemented in protocol.py): the agent hands it the same view (config snapshot with BGP peers
and advertisements, Services, endpoints, nodes, whether this speaker may announce).
announce.py decides what to advertise to which peer (pure), frr.py renders FRR's configuration
(pure), driver.py applies it with frr-reload.py (incremental.py: vtysh changes for the common
small ones), and protocol.py writes ServiceBGPStatus objects.
Nothing in layer2/ is needed here, and nothing here may reach into layer2/.
"""
