-- wrk script for the cluster tests: each connection waits DELAY_MS (10) after an answer
-- before it sends its next request, so that 16 persistent connections make a steady load
-- (about 1,500 requests a second) instead of saturating a 2-vCPU VM, where the instances'
-- BFD and BGP must keep running. wrk still counts every socket error and non-2xx answer.
local delay_ms = tonumber(os.getenv("DELAY_MS") or "10")

function delay()
    return delay_ms
end
