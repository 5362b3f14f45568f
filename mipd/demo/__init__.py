"""``mipd demo``: a throwaway one-machine roaming topology, real ``mipd run`` processes, and a tour.

- :mod:`mipd.demo.topology` builds the namespaces, bridges and links with ``ip``;
- :mod:`mipd.demo.profiles` writes the roles' profiles and keys into a private temporary directory;
- :mod:`mipd.demo.processes` runs ``mipd run`` (and the traffic helpers) inside the namespaces;
- :mod:`mipd.demo.agents` is the code that runs *inside* a namespace (ICMP prober, TCP server/client);
- :mod:`mipd.demo.traffic` collects what those helpers report;
- :mod:`mipd.demo.tour` moves the node and measures each move; :mod:`mipd.demo.report` prints it.
"""
