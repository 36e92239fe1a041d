"""The tier-ranked fair queue's rule: one number per job decides who runs next.

    rank = max(arrival - tier_rank * aging_s, previous rank of the member's active job + member_gap_s)

The lowest rank runs first. A tier's head start of `aging_s` per tier level means a free job that
has waited `aging_s` ties with a pro job that just arrived: waiting jobs climb one tier per
`aging_s`, so nobody starves. The member term spaces one member's jobs apart, so a member with
ten jobs takes turns with the others of the same tier instead of pushing them back (round-robin).

The queue itself is the jobs table (see bot/store.py): waiting jobs are the rows with status
'queued', ordered by (rank, seq, id), where seq is the arrival order that breaks ties. A rank
never changes by itself, so an index on (status, rank, seq) serves the queue: claiming a batch
reads its head, and a position is a count in that index of the waiting jobs ahead (O(jobs
ahead)). Any process sharing the database can submit, cancel, read positions or claim.
"""

from __future__ import annotations


def compute_rank(
    *,
    arrival: float,
    tier_rank: int,
    aging_s: float,
    member_last_rank: float | None,
    member_gap_s: float,
) -> float:
    base = arrival - tier_rank * aging_s
    if member_last_rank is None:
        return base
    return max(base, member_last_rank + member_gap_s)
