"""Links: raw ICMP (advertisements, solicitations), the home link (ARP), the visited link (frames),
and the mobile node's link and routing."""
