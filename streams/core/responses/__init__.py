"""What a thread's contents mean: waiting customers, answers, first response and response
times, SLA, backlog (``threads``, ``partition``, ``totals``, ``sla``, ``channels``)."""
