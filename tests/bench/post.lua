-- post.lua - wrk script of the benchmark: posts pre-signed deliveries.
--
--   wrk -s tests/bench/post.lua URL -- PREFIX SEND_SECONDS once|loop|plain
--
-- Thread n (0-based) reads PREFIX.n, written by tests/bench/gen.c: one
-- delivery a line, "sha256=.. TAB sha1=.. TAB body". Each request posts the
-- next line to URL's path with the headers Meta sends, so no delivery is sent
-- twice ("once"); "loop" starts the file again at its end, for the ceiling
-- server, which does not care; "plain" posts the first line over and over as
-- wrk's static request, the cheapest load wrk can make (for the ceiling too).
--
-- Every response must be accounted for, because tests/bench/run checks that
-- the events stored equal the 200s. wrk stops at -d with requests still in
-- flight, whose fate the client never learns; so this script stops *sending*
-- after SEND_SECONDS (wrk's delay() holds each connection once it has its
-- answer) and wrk is run for a little longer to collect the last answers.
-- A thread that runs out of deliveries stops sending the same way and says
-- so; it never re-sends one. Deliveries/s is counted over the sending window
-- (first request to last answer), not over wrk's -d.
--
-- done() prints one line that tests/bench/run reads:
--   BENCH requests=.. ok=.. sent=.. unanswered=.. ran_out=.. window_s=..
--         rate=.. p50_us=.. p99_us=.. p999_us=.. max_us=.. statuses=200:..,..
-- plus a human-readable summary.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now() -- CLOCK_MONOTONIC in seconds, comparable across threads
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local HOLD_MS = 3600 * 1000 -- a delay() that outlasts any run: "send nothing more"

-- ---- main state: setup() and done() ----

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

-- ---- thread state ----

local file, loop, deadline, path, host
mode = nil
-- delay() reads the line for each request it lets through; wrk then calls
-- request() from a timer, in no promised order across connections: a queue.
local queue, qhead, qtail = {}, 1, 0
local started = false  -- wrk calls request() once before its loop, to check it
local stopped = false
sent, ok, responses, ran_out = 0, 0, 0, 0
first_send, last_response = 0, 0
by_status = {}

function init(args)
    local prefix, seconds
    prefix, seconds, mode = args[1], tonumber(args[2]), args[3]
    if not prefix or not seconds or (mode ~= "once" and mode ~= "loop" and mode ~= "plain") then
        error("usage: wrk -s post.lua URL -- PREFIX SEND_SECONDS once|loop|plain")
    end
    local name = prefix .. "." .. id
    file = assert(io.open(name, "r"))
    if mode == "plain" then
        -- wrk formats one request after init() and sends only it when the
        -- script has no request(); without delay() and response() it does no
        -- Lua work per request at all.
        local line = assert(file:read("*l"), name .. " is empty")
        local a = line:find("\t", 1, true)
        local b = line:find("\t", a + 1, true)
        wrk.method, wrk.body = "POST", line:sub(b + 1)
        wrk.headers["User-Agent"] = "facebookexternalua"
        wrk.headers["Content-Type"] = "application/json"
        wrk.headers["X-Hub-Signature"] = line:sub(a + 1, b - 1)
        wrk.headers["X-Hub-Signature-256"] = line:sub(1, a - 1)
        request, delay, response = nil, nil, nil
        return
    end
    loop = mode == "loop"
    deadline = now() + seconds
    path = wrk.path
    host = wrk.headers["Host"]
end

function delay()
    started = true
    if stopped then
        return HOLD_MS
    end
    if now() >= deadline then
        stopped = true
        return HOLD_MS
    end
    local line = file:read("*l")
    if line == nil and loop then
        file:seek("set", 0)
        line = file:read("*l")
    end
    if line == nil then
        ran_out = 1
        stopped = true
        return HOLD_MS
    end
    qtail = qtail + 1
    queue[qtail] = line
    return 0
end

local function post(target, sig256, sig1, body)
    return "POST " .. target .. " HTTP/1.1\r\nHost: " .. host ..
        "\r\nUser-Agent: facebookexternalua\r\nAccept: */*\r\nAccept-Encoding: deflate, gzip" ..
        "\r\nContent-Type: application/json\r\nX-Hub-Signature: " .. sig1 ..
        "\r\nX-Hub-Signature-256: " .. sig256 ..
        "\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function request()
    local line
    if started and qhead <= qtail then
        line = queue[qhead]
        queue[qhead] = nil
        qhead = qhead + 1
    end
    if line == nil then
        -- wrk's check before its loop, or a re-send after a broken connection:
        -- never repeat a delivery; a path that answers 404 stores nothing.
        if started then sent = sent + 1 end
        return post("/bench/none", "sha256=0", "sha1=0", "{}")
    end
    local a = line:find("\t", 1, true)
    local b = line:find("\t", a + 1, true)
    sent = sent + 1
    if first_send == 0 then first_send = now() end
    return post(path, line:sub(1, a - 1), line:sub(a + 1, b - 1), line:sub(b + 1))
end

function response(status, headers, body)
    responses = responses + 1
    if status == 200 then ok = ok + 1 end
    by_status[status] = (by_status[status] or 0) + 1
    last_response = now()
end

-- ---- main state again ----

function done(summary, latency, requests)
    local e = summary.errors
    if threads[1]:get("mode") == "plain" then
        local n, secs = summary.requests, summary.duration / 1e6
        print(string.format("BENCH requests=%d ok=%d sent=%d unanswered=0 ran_out=0 " ..
            "window_s=%.3f rate=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d errors=%d " ..
            "statuses=", n, n - e.status, n, secs, (n - e.status) / secs,
            latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
            latency.max, e.connect + e.read + e.write + e.timeout))
        return
    end
    local total = {sent = 0, ok = 0, responses = 0, ran_out = 0}
    local t0, t1 = math.huge, 0
    local merged = {}
    for _, t in ipairs(threads) do
        for k in pairs(total) do total[k] = total[k] + t:get(k) end
        local fs, lr = t:get("first_send"), t:get("last_response")
        if fs > 0 and fs < t0 then t0 = fs end
        if lr > t1 then t1 = lr end
        for s, n in pairs(t:get("by_status")) do
            merged[s] = (merged[s] or 0) + n
        end
    end
    local parts = {}
    for s, n in pairs(merged) do parts[#parts + 1] = s .. ":" .. n end
    table.sort(parts)
    local window = (t1 > t0) and (t1 - t0) or 0
    local rate = window > 0 and total.ok / window or 0
    local unanswered = total.sent - total.responses
    print(string.format("  sent %d, answered %d (%s), unanswered %d, errors connect %d read %d " ..
        "write %d timeout %d", total.sent, total.responses, table.concat(parts, " "),
        unanswered, e.connect, e.read, e.write, e.timeout))
    print(string.format("  200s/s over the %.2f s sending window: %.0f; latency p50 %.2f ms, " ..
        "p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", window, rate, latency:percentile(50) / 1000,
        latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
    if total.ran_out > 0 then
        print("  RAN OUT: " .. total.ran_out .. " thread(s) used up their deliveries before " ..
            "the end and stopped sending; generate more (BENCH_MAX_RATE)")
    end
    print(string.format("BENCH requests=%d ok=%d sent=%d unanswered=%d ran_out=%d " ..
        "window_s=%.3f rate=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d " ..
        "errors=%d statuses=%s", total.responses, total.ok, total.sent, unanswered,
        total.ran_out, window, rate, latency:percentile(50), latency:percentile(99),
        latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout,
        table.concat(parts, ",")))
end
