"""Settlement on L1: the batch format, the batch poster, and the replaying auditor.

``codec`` is the consensus part (the byte format of a batch, no I/O); ``l1`` talks to
the L1 over JSON-RPC; ``inbox`` knows the BatchInbox contract; ``poster`` runs in the
node; ``replay`` rebuilds the L2 from L1 alone.
"""
