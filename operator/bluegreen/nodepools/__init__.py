"""The NodePools strategy's node drain: blue/green worker pools inside one cluster.

Instead of replacing a cluster, NodePools replaces its workers: a new pool joins,
the old nodes are cordoned and drained one at a time through the Eviction API,
and the old pool is scaled to zero and kept for the next rotation.

Layers, pure first:

* :mod:`bluegreen.nodepools.plan`: which pods of one node to evict, in what
  order, which to leave and why (kubectl drain's rules), and what blocks a drain;
* :mod:`bluegreen.nodepools.replacements`: whether every evicted pod has come
  back Running and Ready on a node that is not being drained;
* :mod:`bluegreen.nodepools.drain`: the I/O: cordon, one eviction, and
  ``drain_step``, one pass over one node that reads everything afresh.

Nothing here imports the emulated world (an import-linter contract says so).
"""
