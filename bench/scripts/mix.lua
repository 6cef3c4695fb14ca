-- wrk script for the per-request routing benchmark (compare.sh test ka_mix): each wrk thread
-- rotates its requests over three paths that examples/testbed.json routes to three pools,
--   /img/logo.png  -> images (be1)      2,077-byte PNG
--   /app/x         -> apps (be2)        a ~20-byte text answer
--   /static/app.js -> default (be1..3)  a 65-byte script
-- wrk's Lua state is per thread and request() does not see the connection, so the rotation
-- is over the thread's requests: a connection's consecutive requests are whatever the
-- rotation stood at when it sent them (mostly another pool; the same one about a third of
-- the time). Non-2xx answers are counted by wrk itself ("Non-2xx or 3xx responses").
local paths = { "/img/logo.png", "/app/x", "/static/app.js" }
local i = 0
request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
end
