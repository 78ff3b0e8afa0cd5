-- Gives a queue's counter its expiry if the queue is empty (see retire.lua).
-- KEYS: seq, then ready, delayed, prio, inflight, leases, failed
retire_seq(KEYS[1], unpack(KEYS, 2))
return 0
